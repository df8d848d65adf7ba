"""``load_inventory``: read, check and resolve an inventory file in one pass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bulkkm.errors import InventoryError
from bulkkm.inventory._issues import Issues
from bulkkm.inventory._model import Inventory
from bulkkm.inventory._parse import parse_document
from bulkkm.inventory._resolve import resolve
from bulkkm.inventory._source import read_source

__all__ = ["load_inventory"]


def load_inventory(path: Path, *, environ: Mapping[str, str] | None = None) -> Inventory:
    """Load the inventory at ``path``, secrets resolved from ``environ`` (default os.environ).

    Raises ``InventoryError`` carrying every problem found in the file.
    """
    source = read_source(path)
    issues = Issues()
    for key_path, line in source.duplicates:
        issues.add(
            key_path,
            f"duplicate key {key_path[-1]!r}: a key may appear once in a mapping",
            line=line,
        )
    document = parse_document(source.data, issues)
    clusters, warnings = resolve(
        document,
        base_dir=path.parent.absolute(),
        environ=os.environ if environ is None else environ,
        issues=issues,
    )
    if issues:
        raise InventoryError(issues.problems(str(path), source.locate))
    return Inventory(path=path, sha256=source.sha256, clusters=clusters, warnings=warnings)
