"""Regional workers on Temporal (the ``temporal`` extra): ``bulkkm worker`` and ``--temporal``.

A rollout workflow (``_workflow``) fans the clusters out, wave by wave, to the task queue of
each cluster's ``region:`` (``bulkkm-REGION``); a region's worker (``_worker``) runs each
cluster as one activity with bulkkm's own engine and its own copy of the inventory
(``_activity``: secrets never leave the region); the coordinator (``_coordinator``) writes
the report as results arrive. Values crossing Temporal are in ``_wire``. Nothing in the
engine imports this package: the CLI loads it only for these commands.
"""

from __future__ import annotations

import os
import sys
from typing import NoReturn

from bulkkm.temporal._coordinator import attach, start
from bulkkm.temporal._worker import serve_worker

__all__ = ["attach", "leave", "serve_worker", "start"]


def leave(code: int) -> NoReturn:
    """Exit now with ``code``, output flushed, skipping the interpreter's finalization.

    Once a client has connected, the SDK's Rust threads can abort CPython's finalization
    ("PyGILState_Release", exit -6 instead of the run's code: temporalio/sdk-python#300,
    seen here about one run in three). Every report line is written and closed by then.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
