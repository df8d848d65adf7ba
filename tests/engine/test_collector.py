"""The collector's thresholds while runs work: set by the first, restored by the last."""

from __future__ import annotations

import gc
import threading

from bulkkm.collector import RUN_THRESHOLDS, fewer_collections


def test_a_run_sets_the_thresholds_and_restores_them() -> None:
    """During the block the run's thresholds; after it, whatever they were before."""
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == RUN_THRESHOLDS
    assert gc.get_threshold() == before


def test_overlapping_runs_in_threads_restore_only_when_the_last_ends() -> None:
    """Runs ending in another order than they started: the first to end restores nothing."""
    before = gc.get_threshold()
    first_in, first_may_end, first_out = (threading.Event() for _ in range(3))

    def first() -> None:
        with fewer_collections():
            first_in.set()
            first_may_end.wait(10)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with fewer_collections():
        first_may_end.set()
        assert first_out.wait(10)
        assert gc.get_threshold() == RUN_THRESHOLDS  # the second still works
    thread.join(10)
    assert gc.get_threshold() == before
