"""How big each benchmark size is: ``smoke`` (seconds, for CI), ``quick`` (``make bench``)
and ``full`` (``make bench-full``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["SIZES", "FleetRuns", "Size"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetRuns:
    """A fleet and how many times to measure on it."""

    clusters: int
    svms: int
    runs: int
    script_threads: tuple[int, ...] = ()
    """Thread counts of the netapp_ontap thread-pool script to run on this fleet."""
    script_runs: int = 0
    """Repetitions (the first ones) that also run the scripts."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Size:
    """Everything one benchmark size runs."""

    name: str
    makespan: tuple[FleetRuns, ...]
    throughput: FleetRuns
    memory_targets: tuple[int, ...]
    memory_svms: int
    faults: FleetRuns
    limiter_waiters: int
    limiter_seconds: float
    limiter_runs: int


SIZES: dict[str, Size] = {
    "smoke": Size(
        name="smoke",
        makespan=(FleetRuns(clusters=10, svms=4, runs=1, script_threads=(32,), script_runs=1),),
        throughput=FleetRuns(clusters=10, svms=4, runs=1),
        memory_targets=(1_000,),
        memory_svms=50,
        faults=FleetRuns(clusters=10, svms=10, runs=1),
        limiter_waiters=100,
        limiter_seconds=0.5,
        limiter_runs=1,
    ),
    "quick": Size(
        name="quick",
        makespan=(
            FleetRuns(clusters=100, svms=10, runs=3, script_threads=(32, 128), script_runs=1),
        ),
        throughput=FleetRuns(clusters=200, svms=10, runs=3),
        memory_targets=(20_000,),
        memory_svms=100,
        faults=FleetRuns(clusters=100, svms=10, runs=3),
        limiter_waiters=1_000,
        limiter_seconds=2.0,
        limiter_runs=1,
    ),
    "full": Size(
        name="full",
        makespan=(
            FleetRuns(clusters=100, svms=10, runs=3, script_threads=(32, 128), script_runs=3),
            FleetRuns(clusters=1_000, svms=20, runs=3, script_threads=(32, 128), script_runs=1),
            # The script sends ~130 requests/s whatever its threads (its CPU, under the GIL,
            # is the limit): ten minutes here, so once and with 32 threads only.
            FleetRuns(clusters=2_000, svms=50, runs=1, script_threads=(32,), script_runs=1),
        ),
        throughput=FleetRuns(clusters=1_000, svms=20, runs=3),
        memory_targets=(20_000, 100_000, 500_000),
        memory_svms=100,
        faults=FleetRuns(clusters=1_000, svms=20, runs=3),
        limiter_waiters=1_000,
        limiter_seconds=4.0,
        limiter_runs=3,
    ),
}
