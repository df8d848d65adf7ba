"""How big each benchmark size is: ``smoke`` (seconds, for CI), ``quick`` (``make bench``)
and ``full`` (``make bench-full``).
"""

from __future__ import annotations

import dataclasses

__all__ = ["SIZES", "FleetRuns", "LatencyRuns", "Size", "Startup"]


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
class LatencyRuns:
    """A fleet whose answers are slow, as a real ONTAP's: the run is bound by latency."""

    name: str
    clusters: int
    svms: int
    get_ms: float
    """Every answer but a key-server write."""
    write_ms: float
    """Key-server writes (a real ONTAP reaches the KMIP server from every node first)."""
    runs: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Startup:
    """Time to first request: a fleet of ``clusters``, a plan adding to ``planned`` of them."""

    clusters: int
    planned: int
    runs: int


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
    latency: tuple[LatencyRuns, ...]
    startup: Startup
    loops: tuple[FleetRuns, ...]
    """Fleets on which ``bulkkm apply`` runs on asyncio's loop and on uvloop, 20 ms."""


LATENCY_BOUND = "latency-bound"
"""ONTAP's slow writes: GETs 100 ms, key-server POSTs 2 s (issue 14: 2,000 x 20)."""
AS_TRIED = "as tried"
"""What a user tried: ``bulkkm simulate --clusters 500 --svms 8 --latency 1000`` + apply."""

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
        latency=(
            LatencyRuns(name=LATENCY_BOUND, clusters=20, svms=4, get_ms=100, write_ms=500, runs=1),
            LatencyRuns(name=AS_TRIED, clusters=20, svms=8, get_ms=200, write_ms=200, runs=1),
        ),
        startup=Startup(clusters=200, planned=100, runs=1),
        loops=(FleetRuns(clusters=10, svms=4, runs=1),),
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
        latency=(
            # 256 x 10: 4 rounds of the old fixed pool of 64 clusters; ~8 key managers a cluster.
            LatencyRuns(
                name=LATENCY_BOUND, clusters=256, svms=10, get_ms=100, write_ms=2000, runs=1
            ),
            LatencyRuns(name=AS_TRIED, clusters=500, svms=8, get_ms=1000, write_ms=1000, runs=1),
        ),
        startup=Startup(clusters=10_000, planned=5_000, runs=3),
        loops=(
            FleetRuns(clusters=300, svms=10, runs=2),
            FleetRuns(clusters=1_000, svms=20, runs=1),
        ),
    ),
    "full": Size(
        name="full",
        makespan=(
            FleetRuns(clusters=100, svms=10, runs=3, script_threads=(32, 128), script_runs=3),
            FleetRuns(clusters=1_000, svms=20, runs=3, script_threads=(32, 128), script_runs=1),
            # The script sends ~130 requests/s whatever its threads (its CPU, under the GIL,
            # is the limit): ten minutes at this size, so it runs at 1,000 x 20 only.
            FleetRuns(clusters=2_000, svms=50, runs=1),
        ),
        throughput=FleetRuns(clusters=1_000, svms=20, runs=3),
        memory_targets=(20_000, 100_000, 500_000),
        memory_svms=100,
        faults=FleetRuns(clusters=1_000, svms=20, runs=3),
        limiter_waiters=1_000,
        limiter_seconds=4.0,
        limiter_runs=3,
        latency=(
            LatencyRuns(
                name=LATENCY_BOUND, clusters=2_000, svms=20, get_ms=100, write_ms=2000, runs=1
            ),
            LatencyRuns(name=AS_TRIED, clusters=500, svms=8, get_ms=1000, write_ms=1000, runs=3),
        ),
        startup=Startup(clusters=10_000, planned=5_000, runs=5),
        loops=(
            FleetRuns(clusters=300, svms=10, runs=3),
            FleetRuns(clusters=1_000, svms=20, runs=3),
        ),
    ),
}
