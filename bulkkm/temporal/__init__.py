"""Regional workers on Temporal (the ``temporal`` extra): ``bulkkm worker`` and ``--temporal``.

A rollout workflow (``_workflow``) fans the clusters out, wave by wave, to the task queue of
each cluster's ``region:`` (``bulkkm-REGION``); a region's worker (``_worker``) runs each
cluster as one activity with bulkkm's own engine and its own copy of the inventory
(``_activity``: secrets never leave the region); the coordinator (``_coordinator``) writes
the report as results arrive. Values crossing Temporal are in ``_wire``. Nothing in the
engine imports this package: the CLI loads it only for these commands.
"""

from __future__ import annotations

from bulkkm.temporal._coordinator import attach, start
from bulkkm.temporal._worker import serve_worker

__all__ = ["attach", "serve_worker", "start"]
