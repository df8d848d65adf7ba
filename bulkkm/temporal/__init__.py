"""Regional workers on Temporal (the ``temporal`` extra): ``bulkkm worker`` and ``--temporal``.

A rollout workflow (``_workflow``) fans the clusters out, wave by wave, to the task queue of
each cluster's ``region:`` (``bulkkm-REGION``); a region's worker (``_worker``) runs chunks
of its clusters as activities with bulkkm's own engine and its own copy of the inventory
(``_activity``, ``_inventories``: secrets never leave the region; ``_claims``: one cluster
listed twice is worked once); the coordinator (``_coordinator``) writes the report as
results arrive and shows the run as in-process (``_view``). Values crossing Temporal are in
``_wire``. Nothing in the engine imports this package: the CLI loads it only for these
commands.
"""

from __future__ import annotations

from bulkkm.temporal._coordinator import attach, start
from bulkkm.temporal._view import leave
from bulkkm.temporal._worker import serve_worker

__all__ = ["attach", "leave", "serve_worker", "start"]
