"""What the benchmark prints: the figures as tables, and the issue's goals met or not."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from bench.scenarios import (
    FaultsFigure,
    LatencyFigure,
    LimiterFigure,
    LoopFigure,
    MakespanFigure,
    MemoryFigure,
    StartupFigure,
    ThroughputFigure,
)
from bench.sizes import AS_TRIED, LATENCY_BOUND

__all__ = ["Goal", "Results", "goals", "render"]

GOAL_FLEETS = ("1000 x 20", "2000 x 50")
"""The fleets the makespan goal is stated for."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Results:
    """Everything one benchmark run measured."""

    size: str
    environment: dict[str, str]
    makespan: tuple[MakespanFigure, ...] = ()
    throughput: ThroughputFigure | None = None
    memory: MemoryFigure | None = None
    faults: FaultsFigure | None = None
    limiters: tuple[LimiterFigure, ...] = ()
    latency: tuple[LatencyFigure, ...] = ()
    startup: StartupFigure | None = None
    loops: tuple[LoopFigure, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Goal:
    """One of the issue's targets and how this run fared against it."""

    name: str
    goal: str
    measured: str
    met: bool | None
    """None: not measured at this size."""


def goals(results: Results) -> list[Goal]:
    """The issue's targets, checked against what this run measured."""
    out = []
    by_fleet = {f.fleet: f for f in results.makespan}
    for fleet in GOAL_FLEETS:
        m = by_fleet.get(fleet)
        out.append(
            Goal(
                name=f"makespan / ideal at {fleet}",
                goal="<= 1.15",
                measured=f"{m.ratio:.2f} ({m.bound} bound)" if m else "not measured",
                met=None if m is None else m.ratio <= 1.15,
            )
        )
    t = results.throughput
    out.append(
        Goal(
            name=f"throughput / raw aiohttp{f' at {t.fleet}' if t else ''}",
            goal=">= 0.50",
            measured=f"{t.ratio:.2f}" if t else "not measured",
            met=None if t is None else t.ratio >= 0.5,
        )
    )
    out.append(
        Goal(
            name=f"CPU per target{f' at {t.fleet}' if t else ''}",
            goal="<= 400 us",
            measured=f"{t.cpu_us_per_target:,.0f} us" if t else "not measured",
            met=None if t is None else t.cpu_us_per_target <= 400,
        )
    )
    big = None
    if results.memory is not None:
        big = next((p for p in results.memory.points if p.wanted == 500_000), None)
    out.append(
        Goal(
            name="peak RSS at 500,000 targets",
            goal="<= 250 MB",
            measured=f"{big.peak_rss_mb:.0f} MB" if big else "not measured",
            met=None if big is None else big.peak_rss_mb <= 250,
        )
    )
    growth = results.memory.growth_mb_per_100k if results.memory else math.nan
    out.append(
        Goal(
            name="peak RSS growth per 100,000 targets",
            goal="<= 40 MB",
            measured="not measured" if math.isnan(growth) else f"{growth:.0f} MB",
            met=None if math.isnan(growth) else growth <= 40,
        )
    )
    by_case = {(f.name, f.fleet): f for f in results.latency}
    for name, fleet, ratio, rss in (
        (LATENCY_BOUND, "2000 x 20", 1.2, 500.0),
        (AS_TRIED, "500 x 8", 1.5, None),
    ):
        f = by_case.get((name, fleet))
        out.append(
            Goal(
                name=f"{name} {fleet}: makespan / ideal" + (", peak RSS" if rss else ""),
                goal=f"<= {ratio:g}" + (f", <= {rss:.0f} MB" if rss else ""),
                measured=(
                    f"{f.ratio:.2f} ({f.bound} bound)"
                    + (f", {f.peak_rss_mb:.0f} MB" if rss else "")
                    if f
                    else "not measured"
                ),
                met=None
                if f is None
                else f.ratio <= ratio and (rss is None or f.peak_rss_mb <= rss),
            )
        )
    st = results.startup
    big_fleet = st is not None and st.clusters >= 10_000
    out.append(
        Goal(
            name="time to first request at 10,000 clusters, plain / --plan",
            goal="<= 1 s",
            measured=f"{st.plain_seconds:.2f} s / {st.plan_seconds:.2f} s"
            if st and big_fleet
            else "not measured",
            met=None
            if st is None or not big_fleet
            else max(st.plain_seconds, st.plan_seconds) <= 1,
        )
    )
    m = by_fleet.get("1000 x 20")
    script = next((s for s in m.scripts if s.threads == 32), None) if m else None
    out.append(
        Goal(
            name="speed-up over netapp_ontap, 32 threads, at 1000 x 20",
            goal=">= 12x",
            measured=f"{script.speedup:.1f}x" if script else "not measured",
            met=None if script is None else script.speedup >= 12,
        )
    )
    return out


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns aligned: the first to the left, the rest to the right."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [c.rjust(w) for c, w in zip(rest, widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def render(results: Results) -> str:
    """The whole printed report."""
    env = results.environment
    lines = [
        f"bulkkm benchmark, size {results.size}: {env['cpus']} CPUs, Python {env['python']}, "
        f"aiohttp {env['aiohttp']}, bulkkm {env['bulkkm']} ({env['commit']})",
        "The simulator runs in its own process on the same machine: it and the client share",
        f"the {env['cpus']} CPUs, so rates are this machine's and client CPU times include the",
        "contention. Figures are medians; ratios are taken within each repetition.",
        f"Load average at start {env['load_at_start']}, at end {env.get('load_at_end', '?')}"
        " (other work on the machine skews the figures).",
    ]
    if results.makespan:
        lines += ["", "Makespan at 50 ms simulator latency, concurrency 4, TLS on"]
        lines += _table(
            (
                "fleet",
                "targets",
                "runs",
                "bulkkm s",
                "ideal s",
                "bound",
                "ratio",
                "latency s",
                "cpu s",
                "raw req/s",
            ),
            [
                (
                    f.fleet,
                    f"{f.targets:,}",
                    str(f.runs),
                    f"{f.seconds:.2f}",
                    f"{f.ideal_seconds:.2f}",
                    f.bound,
                    f"{f.ratio:.2f}",
                    f"{f.latency_bound:.2f}",
                    f"{f.cpu_bound:.2f}",
                    f"{f.raw_rps:,.0f}",
                )
                for f in results.makespan
            ],
        )
        scripts = [(f, s) for f in results.makespan for s in f.scripts]
        if scripts:
            lines += ["", "The alternative: netapp_ontap from a ThreadPoolExecutor, same fleets"]
            lines += _table(
                ("fleet", "threads", "runs", "script s", "bulkkm s", "bulkkm speed-up"),
                [
                    (
                        f.fleet,
                        str(s.threads),
                        str(s.runs),
                        f"{s.seconds:.2f}",
                        f"{f.seconds:.2f}",
                        f"{s.speedup:.1f}x",
                    )
                    for f, s in scripts
                ],
            )
    if (t := results.throughput) is not None:
        lines += ["", f"Throughput at 0 ms latency, {t.fleet} ({t.targets:,} targets)"]
        lines += _table(
            ("client", "req/s", "targets/s", "CPU us/target"),
            [
                (
                    "bulkkm",
                    f"{t.bulkkm_rps:,.0f}",
                    f"{t.targets_per_second:,.0f}",
                    f"{t.cpu_us_per_target:,.0f}",
                ),
                ("raw aiohttp", f"{t.raw_rps:,.0f}", "", f"{t.raw_cpu_us_per_target:,.0f}"),
            ],
        )
        lines.append(
            f"bulkkm / raw: {t.ratio:.2f}; simulator CPU during bulkkm's run: "
            f"{t.simulator_cpu_share:.2f} cores"
        )
    if (mem := results.memory) is not None:
        lines += ["", "Memory: peak RSS of `bulkkm apply` (its own process)"]
        lines += _table(
            ("fleet", "targets", "peak RSS MB", "seconds", "exit"),
            [
                (
                    f"{p.clusters} x {p.svms}",
                    f"{p.targets:,}",
                    f"{p.peak_rss_mb:.0f}",
                    f"{p.seconds:.1f}",
                    str(p.exit_code),
                )
                for p in mem.points
            ],
        )
        if not math.isnan(mem.growth_mb_per_100k):
            steps = ", ".join(f"{g:.1f}" for g in mem.segments_mb_per_100k)
            lines.append(
                f"growth per 100,000 targets: {mem.growth_mb_per_100k:.1f} MB (least squares); "
                f"from each size to the next: {steps} MB"
            )
    if (fl := results.faults) is not None:
        lines += [
            "",
            f"Faults: {fl.fleet} at 50 ms, 5% transient KMIP errors, 1% ambiguous POSTs",
            f"clean {fl.clean_seconds:.2f} s, faulty {fl.faulty_seconds:.2f} s, "
            f"ratio {fl.ratio:.2f}, retries {fl.retries}, targets not added/present: "
            f"{fl.not_done}",
        ]
    if results.latency:
        lines += [
            "",
            "Latency-bound: `bulkkm apply` (its own process) where ONTAP answers slowly, "
            "concurrency 4, TLS on",
        ]
        lines += _table(
            (
                "case",
                "fleet",
                "GET/POST ms",
                "targets",
                "runs",
                "bulkkm s",
                "ideal s",
                "bound",
                "ratio",
                "latency s",
                "cpu s",
                "run s",
                "peak RSS MB",
            ),
            [
                (
                    f.name,
                    f.fleet,
                    f"{f.get_ms:g}/{f.write_ms:g}",
                    f"{f.targets:,}",
                    str(f.runs),
                    f"{f.seconds:.2f}",
                    f"{f.ideal_seconds:.2f}",
                    f.bound,
                    f"{f.ratio:.2f}",
                    f"{f.latency_bound:.2f}",
                    f"{f.cpu_bound:.2f}",
                    f"{f.run_seconds:.2f}",
                    f"{f.peak_rss_mb:.0f}",
                )
                for f in results.latency
            ],
        )
        lines += [
            "bulkkm s: process start to exit (run s: the report's run alone); ideal: the larger",
            "of the longest cluster's critical path (1 discovery round trip + ceil(POSTs / 4) x",
            "POST latency, a records[] POST per key manager) and the process's CPU seconds",
        ]
    if (st := results.startup) is not None:
        lines += [
            "",
            f"Start-up: process start to the fleet's first request, {st.clusters:,} clusters "
            f"(median of {st.runs})",
            f"plain {st.plain_seconds:.2f} s; --plan adding to {st.planned:,} clusters "
            f"{st.plan_seconds:.2f} s",
        ]
    if results.loops:
        lines += ["", "Event loops: `bulkkm apply` (its own process) at 20 ms, BULKKM_LOOP"]
        lines += _table(
            ("fleet", "loop", "targets", "runs", "run s", "peak RSS MB", "CPU us/target"),
            [
                (
                    f.fleet,
                    f.loop,
                    f"{f.targets:,}",
                    str(f.runs),
                    f"{f.seconds:.2f}",
                    f"{f.peak_rss_mb:.0f}",
                    f"{f.cpu_us_per_target:,.0f}",
                )
                for f in results.loops
            ],
        )
    if results.limiters:
        first = results.limiters[0]
        lines += [
            "",
            f"Rate limiters: {first.waiters:,} waiters on one limiter, {first.seconds:.1f} s",
        ]
        lines += _table(
            ("limiter", "runs", "seconds", "CPU s", "CPU us/acquire"),
            [
                (
                    r.limiter,
                    str(r.runs),
                    f"{r.seconds:.2f}",
                    f"{r.cpu_seconds:.3f}",
                    f"{r.cpu_us_per_acquire:,.0f}",
                )
                for r in results.limiters
            ],
        )
    lines += ["", "Goals"]
    verdict = {True: "met", False: "MISSED", None: "-"}
    lines += _table(
        ("goal", "target", "measured", "verdict"),
        [(g.name, g.goal, g.measured, verdict[g.met]) for g in goals(results)],
    )
    return "\n".join(lines)
