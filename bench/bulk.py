"""bulkkm itself, run in this process through its API, with the report a real run writes.

Running in-process lets the benchmark read the client's CPU time for the run alone
(``time.process_time``), without the interpreter's start-up and the inventory load.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Final

from bulkkm import engine
from bulkkm.events import ClusterDiscovered, Event, Outcome, Retrying, RunFinished, TargetResult
from bulkkm.inventory import load_inventory
from bulkkm.report import ReportWriter

__all__ = ["DONE", "BulkRun", "bulkkm_rollout"]

DONE: Final = frozenset({Outcome.ADDED.value, Outcome.PRESENT.value})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BulkRun:
    """What one bulkkm run did and what it cost."""

    seconds: float
    cpu_seconds: float
    outcomes: dict[str, int]
    clusters_failed: int
    retries: int
    posts_per_cluster: dict[str, int]
    """Targets ``added`` per cluster: the writes each cluster needed."""

    @property
    def targets(self) -> int:
        """Targets with an outcome."""
        return sum(self.outcomes.values())

    @property
    def not_done(self) -> int:
        """Targets not ``added`` or ``present``, plus clusters that could not be discovered."""
        bad = sum(n for outcome, n in self.outcomes.items() if outcome not in DONE)
        return bad + self.clusters_failed

    @property
    def requests(self) -> int:
        """Requests a fault-free run sends: two discovery GETs per cluster, one POST per add."""
        return 2 * len(self.posts_per_cluster) + sum(self.posts_per_cluster.values())


class _Recorder:
    """A subscriber that keeps only counts."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.added: Counter[str] = Counter()
        self.retries = 0

    def __call__(self, event: Event) -> None:
        """Count adds per cluster (every discovered cluster, even with none), and retries."""
        if isinstance(event, ClusterDiscovered):
            self.added[event.cluster] += 0
        elif isinstance(event, TargetResult):
            self.added[event.cluster] += event.outcome is Outcome.ADDED
        elif isinstance(event, Retrying):
            self.retries += 1


async def bulkkm_rollout(inventory: Path, report: Path, options: engine.Options) -> BulkRun:
    """Apply the inventory with bulkkm; time the run (not the inventory load)."""
    loaded = load_inventory(inventory)
    writer = ReportWriter.create(report, overwrite=True)
    recorder = _Recorder()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        summary: RunFinished = await engine.run(loaded, options, [writer, recorder])
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    finally:
        writer.close()
    return BulkRun(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        outcomes=dict(summary.counts),
        clusters_failed=summary.clusters_failed,
        retries=recorder.retries,
        posts_per_cluster=dict(recorder.added),
    )
