"""Python's cyclic garbage collector: paused while start-up builds, tuned while runs work.

A saved plan and an inventory of thousands of clusters are hundreds of thousands of new
objects without a cycle among them: each full collection they set off walks all of them
and frees nothing (half the load time of 10,000 clusters), so ``paused`` holds the
collector off while they are built (reference counting frees as usual).

With its default thresholds (700, 10, 10) the collector walks every tracked object of the
process (every cluster's session, connections, futures) at each full collection, and a run
of 600 x 20 made 7 of them at ~170 ms, a fifth of the run's CPU with the younger ones. A run
allocates mostly objects that reference counting frees; the cycles it leaves (exceptions
with their tracebacks, futures) are few. So while any run works, a collection starts after
20,000 allocations instead of 700, and the older generations less often: in the benchmark,
the collector's CPU fell from ~2.4 s to ~0.4 s of a 10-12 s run, and memory stays bounded
by what 20,000 young objects hold. Several runs may work at once (the service runs each in
a thread of its own): the first to start sets the thresholds, the last to end restores them.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator
from typing import Final

__all__ = ["RUN_THRESHOLDS", "fewer_collections", "paused"]

RUN_THRESHOLDS: Final = (20_000, 20, 20)
"""The collector's thresholds while a run works (Python's own are 700, 10, 10)."""

_lock = threading.Lock()
_runs = 0
_saved: tuple[int, int, int] = (700, 10, 10)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """``RUN_THRESHOLDS`` while the block runs (and any other run's block)."""
    global _runs, _saved  # noqa: PLW0603 -- one setting of the process, shared by its runs
    with _lock:
        if _runs == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*RUN_THRESHOLDS)
        _runs += 1
    try:
        yield
    finally:
        with _lock:
            _runs -= 1
            if _runs == 0:
                gc.set_threshold(*_saved)


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic collection while the block runs (unless it was off already)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
