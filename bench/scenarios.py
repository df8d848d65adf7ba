"""The measurements: each scenario starts its fleets, runs the clients and returns figures.

Every repetition starts a fresh simulator (every key manager lacks its servers again),
warms it with a read-only pass of the baseline, then runs the clients being compared on
that same fleet, so each ratio is taken within one repetition; figures are medians over the
repetitions. The clients add different servers (bulkkm ``kms-new``, the baseline
``kms-raw``, the scripts ``kms-netapp-N``), so each finds exactly one add per key manager.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import itertools
import math
import os
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import orjson
import yaml

from bench.bulk import BulkRun, bulkkm_rollout
from bench.first_request import time_to_first_request
from bench.fleet import Fleet, FleetShape, running_fleet
from bench.limiters import LIMITERS, measure_limiter
from bench.memory import ApplyRun, apply_process
from bench.netapp_script import ScriptRun, netapp_script_rollout
from bench.raw import RawRun, raw_rollout
from bench.sizes import FleetRuns, LatencyRuns, Size
from bulkkm import engine

__all__ = [
    "FaultsFigure",
    "LatencyFigure",
    "LimiterFigure",
    "LoopFigure",
    "MakespanFigure",
    "MemoryFigure",
    "StartupFigure",
    "ThroughputFigure",
    "faults",
    "latency",
    "limiters",
    "loops",
    "makespan",
    "memory",
    "startup",
    "throughput",
]

LATENCY_MS: Final = 50.0
CONCURRENCY: Final = 4
"""Per-cluster concurrency: the inventory's default, and the baseline's."""
ACTIVE_CLUSTERS: Final = engine.default_max_connections() // CONCURRENCY
"""Clusters bulkkm works on at once by default (its connection budget / concurrency); the
baseline works on as many."""
DISCOVERY_ROUND_TRIPS: Final = 1
"""bulkkm's two discovery GETs go out together; no SVM is named, so no third one."""
TRANSIENT_RATE: Final = 0.05
AMBIGUOUS_RATE: Final = 0.01
EXTERNAL_SHARE: Final = 0.8
"""The simulator's default share of SVMs with an external key manager (sizes the memory
fleets; the figures use the target count the report gives)."""

Progress = Callable[[str], None]


def _median(values: Sequence[float]) -> float:
    """The median, NaN for none."""
    return statistics.median(values) if values else math.nan


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class _Rep:
    """One repetition on one fleet: the baseline, bulkkm and the scripts."""

    raw: RawRun
    bulk: BulkRun
    scripts: tuple[ScriptRun, ...]
    simulator_cpu_raw: float
    simulator_cpu_bulk: float


def _compare(
    shape: FleetShape, directory: Path, *, bulk_first: bool, script_threads: Sequence[int]
) -> _Rep:
    """Warm a fresh fleet up, then run the baseline and bulkkm (and the scripts) on it."""
    with running_fleet(shape, directory) as fleet:
        asyncio.run(_raw(fleet, read_only=True))
        before = fleet.cpu_seconds()
        if bulk_first:
            bulk = _bulk(fleet, directory)
            middle = fleet.cpu_seconds()
            raw = asyncio.run(_raw(fleet))
            sim_bulk, sim_raw = middle - before, fleet.cpu_seconds() - middle
        else:
            raw = asyncio.run(_raw(fleet))
            middle = fleet.cpu_seconds()
            bulk = _bulk(fleet, directory)
            sim_raw, sim_bulk = middle - before, fleet.cpu_seconds() - middle
        scripts = tuple(
            netapp_script_rollout(
                fleet.inventory, server=f"kms-netapp-{threads}.example.com:5696", threads=threads
            )
            for threads in script_threads
        )
    return _Rep(
        raw=raw,
        bulk=bulk,
        scripts=scripts,
        simulator_cpu_raw=sim_raw,
        simulator_cpu_bulk=sim_bulk,
    )


async def _raw(fleet: Fleet, *, read_only: bool = False) -> RawRun:
    """The baseline with bulkkm's concurrency: per cluster, and clusters at once."""
    return await raw_rollout(
        fleet, concurrency=CONCURRENCY, active_clusters=ACTIVE_CLUSTERS, read_only=read_only
    )


def _bulk(fleet: Fleet, directory: Path) -> BulkRun:
    """bulkkm's run on the fleet, with its default options."""
    return asyncio.run(
        bulkkm_rollout(fleet.inventory, directory / "report.jsonl", engine.Options())
    )


def _reps(fleet: FleetRuns, latency_ms: float, directory: Path, progress: Progress) -> list[_Rep]:
    """``fleet.runs`` repetitions, alternating which client goes first."""
    shape = FleetShape(clusters=fleet.clusters, svms=fleet.svms, latency_ms=latency_ms)
    reps = []
    for run in range(fleet.runs):
        threads = fleet.script_threads if run < fleet.script_runs else ()
        progress(f"{shape.label} at {latency_ms:g} ms, run {run + 1}/{fleet.runs}")
        reps.append(
            _compare(
                shape,
                directory / f"{fleet.clusters}x{fleet.svms}-{latency_ms:g}ms-{run}",
                bulk_first=run % 2 == 1,
                script_threads=threads,
            )
        )
    return reps


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScriptFigure:
    """The thread-pool script with ``threads`` threads on one fleet."""

    threads: int
    runs: int
    seconds: float
    speedup: float
    """Its makespan over bulkkm's in the same repetition (median)."""
    not_done: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MakespanFigure:
    """bulkkm's makespan on one fleet against the ideal."""

    fleet: str
    clusters: int
    svms: int
    targets: int
    requests: int
    runs: int
    seconds: float
    ideal_seconds: float
    ratio: float
    """Measured / ideal, median of the repetitions' ratios."""
    bound: str
    """Which bound made the ideal (``latency`` or ``cpu``) in most repetitions."""
    latency_bound: float
    cpu_bound: float
    raw_rps: float
    raw_seconds: float
    scripts: tuple[ScriptFigure, ...]
    not_done: int


def makespan(size: Size, directory: Path, progress: Progress) -> list[MakespanFigure]:
    """Makespan against the ideal at 50 ms, and the thread-pool scripts on the same fleets."""
    figures = []
    for fleet in size.makespan:
        reps = _reps(fleet, LATENCY_MS, directory / "makespan", progress)
        ideals = [_ideal(rep) for rep in reps]
        bounds = Counter("latency" if lat >= cpu else "cpu" for lat, cpu in ideals)
        scripts = []
        for index, threads in enumerate(fleet.script_threads):
            runs = [(rep.scripts[index], rep.bulk) for rep in reps if rep.scripts]
            if runs:
                scripts.append(
                    ScriptFigure(
                        threads=threads,
                        runs=len(runs),
                        seconds=_median([s.seconds for s, _ in runs]),
                        speedup=_median([s.seconds / b.seconds for s, b in runs]),
                        not_done=max(s.failed for s, _ in runs),
                    )
                )
        figures.append(
            MakespanFigure(
                fleet=f"{fleet.clusters} x {fleet.svms}",
                clusters=fleet.clusters,
                svms=fleet.svms,
                targets=reps[0].bulk.targets,
                requests=reps[0].bulk.requests,
                runs=len(reps),
                seconds=_median([r.bulk.seconds for r in reps]),
                ideal_seconds=_median([max(i) for i in ideals]),
                ratio=_median([r.bulk.seconds / max(i) for r, i in zip(reps, ideals, strict=True)]),
                bound=bounds.most_common(1)[0][0],
                latency_bound=_median([lat for lat, _ in ideals]),
                cpu_bound=_median([cpu for _, cpu in ideals]),
                raw_rps=_median([r.raw.requests_per_second for r in reps]),
                raw_seconds=_median([r.raw.seconds for r in reps]),
                scripts=tuple(scripts),
                not_done=max(r.bulk.not_done for r in reps),
            )
        )
    return figures


def _ideal(rep: _Rep) -> tuple[float, float]:
    """(latency bound, CPU bound) in seconds for bulkkm's run in this repetition."""
    slowest = max(rep.bulk.posts_per_cluster.values(), default=0)
    round_trips = DISCOVERY_ROUND_TRIPS + math.ceil(slowest / CONCURRENCY)
    return round_trips * LATENCY_MS / 1000, rep.bulk.requests / rep.raw.requests_per_second


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ThroughputFigure:
    """bulkkm's sustained request rate at zero latency against bare aiohttp's."""

    fleet: str
    targets: int
    requests: int
    runs: int
    bulkkm_rps: float
    raw_rps: float
    ratio: float
    targets_per_second: float
    cpu_us_per_target: float
    raw_cpu_us_per_target: float
    simulator_cpu_share: float
    """Simulator CPU seconds per second of bulkkm's run (1.0: one core busy)."""
    not_done: int


def throughput(size: Size, directory: Path, progress: Progress) -> ThroughputFigure:
    """The request rate bulkkm sustains at latency 0 against the baseline's, same fleet."""
    fleet = size.throughput
    reps = _reps(fleet, 0.0, directory / "throughput", progress)
    return ThroughputFigure(
        fleet=f"{fleet.clusters} x {fleet.svms}",
        targets=reps[0].bulk.targets,
        requests=reps[0].bulk.requests,
        runs=len(reps),
        bulkkm_rps=_median([r.bulk.requests / r.bulk.seconds for r in reps]),
        raw_rps=_median([r.raw.requests_per_second for r in reps]),
        ratio=_median([r.bulk.requests / r.bulk.seconds / r.raw.requests_per_second for r in reps]),
        targets_per_second=_median([r.bulk.targets / r.bulk.seconds for r in reps]),
        cpu_us_per_target=_median([r.bulk.cpu_seconds / r.bulk.targets * 1e6 for r in reps]),
        raw_cpu_us_per_target=_median([r.raw.cpu_seconds / r.raw.posts * 1e6 for r in reps]),
        simulator_cpu_share=_median([r.simulator_cpu_bulk / r.bulk.seconds for r in reps]),
        not_done=max(r.bulk.not_done for r in reps),
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryPoint:
    """Peak RSS of one ``bulkkm apply`` process."""

    wanted: int
    """The target count the size asked for (``targets`` is what the fleet gave)."""
    clusters: int
    svms: int
    targets: int
    peak_rss_mb: float
    seconds: float
    cpu_seconds: float
    exit_code: int
    not_done: int
    log_tail: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemoryFigure:
    """Peak RSS at each size and its growth per 100,000 targets."""

    points: tuple[MemoryPoint, ...]
    growth_mb_per_100k: float
    """The least-squares slope over the points (NaN with fewer than two)."""
    segments_mb_per_100k: tuple[float, ...]
    """The growth between each point and the next: where memory levels off shows here."""


def memory(size: Size, directory: Path, progress: Progress) -> MemoryFigure:
    """Peak RSS of ``bulkkm apply`` (a process of its own) at each target count, once each."""
    points = []
    for wanted in size.memory_targets:
        clusters = max(1, round(wanted / (size.memory_svms * EXTERNAL_SHARE)))
        shape = FleetShape(clusters=clusters, svms=size.memory_svms)
        progress(f"memory: {shape.label} (about {wanted:,} targets)")
        where = directory / "memory" / f"{clusters}x{size.memory_svms}"
        with running_fleet(shape, where) as fleet:
            run = apply_process(fleet.inventory, where / "report.jsonl")
        points.append(
            MemoryPoint(
                wanted=wanted,
                clusters=clusters,
                svms=size.memory_svms,
                targets=run.targets,
                peak_rss_mb=run.peak_rss_mb,
                seconds=run.seconds,
                cpu_seconds=run.cpu_seconds,
                exit_code=run.exit_code,
                # A run that died before its summary leaves every target unaccounted for.
                not_done=run.not_done if run.complete else max(run.targets, 1),
                log_tail=run.log_tail,
            )
        )
    segments = tuple(
        (b.peak_rss_mb - a.peak_rss_mb) / (b.targets - a.targets) * 100_000
        for a, b in itertools.pairwise(points)
        if b.targets != a.targets
    )
    return MemoryFigure(
        points=tuple(points),
        growth_mb_per_100k=_slope(points) * 100_000,
        segments_mb_per_100k=segments,
    )


def _slope(points: Sequence[MemoryPoint]) -> float:
    """Peak RSS megabytes per target, least squares (NaN with fewer than two sizes)."""
    if len({p.targets for p in points}) < 2:
        return math.nan
    return statistics.linear_regression(
        [p.targets for p in points], [p.peak_rss_mb for p in points]
    ).slope


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FaultsFigure:
    """bulkkm on a faulty fleet against the same fleet without faults."""

    fleet: str
    runs: int
    clean_seconds: float
    faulty_seconds: float
    ratio: float
    retries: int
    """The most retries one faulty run made."""
    not_done: int


def faults(size: Size, directory: Path, progress: Progress) -> FaultsFigure:
    """5% transient KMIP errors and 1% ambiguous POSTs, at 50 ms: makespan ratio, not done."""
    fleet = size.faults
    pairs: list[tuple[BulkRun, BulkRun]] = []
    for run in range(fleet.runs):
        progress(f"faults: {fleet.clusters} x {fleet.svms}, run {run + 1}/{fleet.runs}")
        clean = FleetShape(clusters=fleet.clusters, svms=fleet.svms, latency_ms=LATENCY_MS)
        faulty = dataclasses.replace(
            clean, transient_rate=TRANSIENT_RATE, ambiguous_rate=AMBIGUOUS_RATE
        )
        pairs.append(
            (
                _warm_bulk(clean, directory / "faults" / f"clean-{run}"),
                _warm_bulk(faulty, directory / "faults" / f"faulty-{run}"),
            )
        )
    return FaultsFigure(
        fleet=f"{fleet.clusters} x {fleet.svms}",
        runs=len(pairs),
        clean_seconds=_median([c.seconds for c, _ in pairs]),
        faulty_seconds=_median([f.seconds for _, f in pairs]),
        ratio=_median([f.seconds / c.seconds for c, f in pairs]),
        retries=max(f.retries for _, f in pairs),
        not_done=max(max(c.not_done, f.not_done) for c, f in pairs),
    )


def _warm_bulk(shape: FleetShape, directory: Path) -> BulkRun:
    """bulkkm on a fresh, warmed-up fleet."""
    with running_fleet(shape, directory) as fleet:
        asyncio.run(_raw(fleet, read_only=True))
        return _bulk(fleet, directory)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LimiterFigure:
    """One rate limiter's CPU cost under many waiters."""

    limiter: str
    waiters: int
    runs: int
    seconds: float
    cpu_seconds: float
    cpu_us_per_acquire: float


def limiters(size: Size, progress: Progress) -> list[LimiterFigure]:
    """aiolimiter against asyncio-throttle: CPU seconds for the same throttled work."""
    figures = []
    for name in LIMITERS:
        progress(f"limiter: {name}")
        runs = [
            measure_limiter(name, waiters=size.limiter_waiters, seconds=size.limiter_seconds)
            for _ in range(size.limiter_runs)
        ]
        figures.append(
            LimiterFigure(
                limiter=name,
                waiters=size.limiter_waiters,
                runs=len(runs),
                seconds=_median([r.seconds for r in runs]),
                cpu_seconds=_median([r.cpu_seconds for r in runs]),
                cpu_us_per_acquire=_median([r.cpu_us_per_acquire for r in runs]),
            )
        )
    return figures


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LatencyFigure:
    """``bulkkm apply`` (its own process) on a slow fleet: makespan, ideal, peak RSS."""

    name: str
    fleet: str
    get_ms: float
    write_ms: float
    targets: int
    runs: int
    seconds: float
    """From the process's start to its exit, as a user waits for it."""
    run_seconds: float
    """The run's own duration, from its report (start-up and inventory load apart)."""
    ideal_seconds: float
    ratio: float
    bound: str
    latency_bound: float
    """The longest cluster's critical path: discovery, then its POSTs 4 at a time."""
    cpu_bound: float
    """The CPU seconds the process used (start-up included, as in ``seconds``): one event
    loop cannot spend them in less."""
    peak_rss_mb: float
    not_done: int


def latency(size: Size, directory: Path, progress: Progress) -> list[LatencyFigure]:
    """bulkkm where ONTAP answers slowly (key-server writes in seconds): latency-bound runs."""
    figures = []
    for case in size.latency:
        shape = FleetShape(
            clusters=case.clusters,
            svms=case.svms,
            latency_ms=case.get_ms,
            write_latency_ms=case.write_ms,
        )
        runs = []
        for run in range(case.runs):
            progress(
                f"latency ({case.name}): {shape.label}, GET {case.get_ms:g} ms, "
                f"POST {case.write_ms:g} ms, run {run + 1}/{case.runs}"
            )
            where = directory / "latency" / f"{case.clusters}x{case.svms}-{case.write_ms:g}-{run}"
            with running_fleet(shape, where) as fleet:
                applied = apply_process(fleet.inventory, where / "report.jsonl")
            critical = _critical_path(case, _posts_per_cluster(where / "report.jsonl"))
            runs.append((applied, critical))
        ideals = [max(critical, applied.cpu_seconds) for applied, critical in runs]
        bounds = Counter("latency" if c >= a.cpu_seconds else "cpu" for a, c in runs)
        figures.append(
            LatencyFigure(
                name=case.name,
                fleet=shape.label,
                get_ms=case.get_ms,
                write_ms=case.write_ms,
                targets=runs[0][0].targets,
                runs=len(runs),
                seconds=_median([a.seconds for a, _ in runs]),
                run_seconds=_median([a.run_seconds for a, _ in runs]),
                ideal_seconds=_median(ideals),
                ratio=_median([a.seconds / i for (a, _), i in zip(runs, ideals, strict=True)]),
                bound=bounds.most_common(1)[0][0],
                latency_bound=_median([c for _, c in runs]),
                cpu_bound=_median([a.cpu_seconds for a, _ in runs]),
                peak_rss_mb=_median([a.peak_rss_mb for a, _ in runs]),
                not_done=max(a.not_done if a.complete else max(a.targets, 1) for a, _ in runs),
            )
        )
    return figures


def _posts_per_cluster(report: Path) -> dict[str, int]:
    """The POSTs each cluster needed, from the report: one per key manager given a server.

    From ONTAP 9.8 bulkkm sends a key manager's missing servers as one ``records[]`` POST
    (one POST per server before); the benchmark's inventory asks for one server, so in every
    version a key manager that gets its server took exactly one POST.
    """
    key_managers: dict[str, set[str]] = {}
    with report.open("rb") as lines:
        for raw in lines:
            line = orjson.loads(raw)
            if line.get("type") == "target" and line.get("outcome") == "added":
                key_managers.setdefault(line["cluster"], set()).add(str(line["key_manager_uuid"]))
    return {cluster: len(kms) for cluster, kms in key_managers.items()}


def _critical_path(case: LatencyRuns, posts: dict[str, int]) -> float:
    """The longest cluster's own path: discovery's one round trip, then its POSTs in rounds.

    Its two discovery GETs go out together (one round trip); its POSTs go ``CONCURRENCY``
    at a time, each taking the write latency. Every cluster could start at once: this is
    what no scheduler can beat, whatever it does with the others.
    """
    slowest = max(posts.values(), default=0)
    rounds = math.ceil(slowest / CONCURRENCY)
    return (DISCOVERY_ROUND_TRIPS * case.get_ms + rounds * case.write_ms) / 1000


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class StartupFigure:
    """Seconds from ``bulkkm apply``'s process start to the first request a cluster sees."""

    clusters: int
    planned: int
    runs: int
    plain_seconds: float
    plan_seconds: float
    """With ``--plan``, a saved plan adding servers on ``planned`` clusters."""


def startup(size: Size, directory: Path, progress: Progress) -> StartupFigure:
    """Time to first request on a large inventory, plain and with a saved plan."""
    case = size.startup
    progress(f"start-up: {case.clusters:,} clusters, {case.planned:,} planned, {case.runs} runs")
    plain, planned = time_to_first_request(
        case.clusters, case.planned, case.runs, directory / "first-request"
    )
    return StartupFigure(
        clusters=case.clusters,
        planned=case.planned,
        runs=case.runs,
        plain_seconds=_median([r.seconds for r in plain]),
        plan_seconds=_median([r.seconds for r in planned]),
    )


LOOP_LATENCY_MS: Final = 20.0
LOOPS: Final = ("asyncio", "uvloop")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LoopFigure:
    """``bulkkm apply`` (its own process) on one event loop, on one fleet."""

    fleet: str
    loop: str
    targets: int
    runs: int
    seconds: float
    """The run's duration (the report's)."""
    peak_rss_mb: float
    cpu_us_per_target: float
    """The process's CPU, start-up included, per target."""
    not_done: int


def loops(size: Size, directory: Path, progress: Progress) -> list[LoopFigure]:
    """asyncio's loop against uvloop (``BULKKM_LOOP``) on the same fleets, at 20 ms."""
    figures = []
    for fleet in size.loops:
        shape = FleetShape(clusters=fleet.clusters, svms=fleet.svms, latency_ms=LOOP_LATENCY_MS)
        # uvloop is the `fast` extra: without it there is nothing to compare.
        present = tuple(n for n in LOOPS if n != "uvloop" or importlib.util.find_spec(n))
        runs: dict[str, list[ApplyRun]] = {name: [] for name in present}
        for run in range(fleet.runs):
            progress(f"loops: {shape.label} at {LOOP_LATENCY_MS:g} ms, run {run + 1}/{fleet.runs}")
            where = directory / "loops" / f"{fleet.clusters}x{fleet.svms}-{run}"
            with running_fleet(shape, where) as simulated:
                asyncio.run(_raw(simulated, read_only=True))
                order = present if run % 2 == 0 else present[::-1]
                for name in order:
                    # Each loop adds a server of its own, so each finds one add per key manager.
                    inventory = _with_server(simulated.inventory, f"kms-{name}.example.com:5696")
                    env = {**os.environ, "BULKKM_LOOP": name}
                    report = where / f"report-{name}.jsonl"
                    runs[name].append(apply_process(inventory, report, env=env))
        figures += [
            LoopFigure(
                fleet=shape.label,
                loop=name,
                targets=done[0].targets,
                runs=len(done),
                seconds=_median([r.run_seconds for r in done]),
                peak_rss_mb=_median([r.peak_rss_mb for r in done]),
                cpu_us_per_target=_median([r.cpu_seconds / max(r.targets, 1) * 1e6 for r in done]),
                not_done=max(r.not_done if r.complete else max(r.targets, 1) for r in done),
            )
            for name, done in runs.items()
        ]
    return figures


def _with_server(inventory: Path, server: str) -> Path:
    """A copy of the benchmark's inventory asking for ``server`` instead."""
    data = yaml.safe_load(inventory.read_text())
    data["defaults"]["key_servers"] = [server]
    out = inventory.with_name(f"{inventory.stem}-{server.split('.', maxsplit=1)[0]}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
