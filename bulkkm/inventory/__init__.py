"""The inventory: a fleet file read, checked and resolved into frozen values.

``load_inventory`` reports every problem of a file at once (``InventoryError``), its YAML
parsed ahead in a child process if ``read_ahead`` started one;
``inventory_schema`` is the format as JSON Schema; ``describe`` is what ``validate`` prints.
"""

from __future__ import annotations

from bulkkm.inventory._ahead import ReadAhead, read_ahead
from bulkkm.inventory._describe import describe
from bulkkm.inventory._load import load_inventory
from bulkkm.inventory._model import (
    Cluster,
    DesiredServer,
    Inventory,
    Limits,
    Rollout,
    SelectorKind,
    SvmSelector,
    Tls,
)
from bulkkm.inventory._schema import inventory_schema

__all__ = [
    "Cluster",
    "DesiredServer",
    "Inventory",
    "Limits",
    "ReadAhead",
    "Rollout",
    "SelectorKind",
    "SvmSelector",
    "Tls",
    "describe",
    "inventory_schema",
    "load_inventory",
    "read_ahead",
]
