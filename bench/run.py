"""The entry point: run a size's scenarios, print the table, write the results and the plot.

The exit code is 1 only when a run left targets not ``added``/``present`` (or the
benchmark's own clients failed); timings never fail it. A crash exits non-zero too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Final

from bench import scenarios
from bench.sizes import SIZES
from bench.table import Results, goals, render
from bulkkm.logs import configure_logging

__all__ = ["main"]

RESULTS: Final = Path(__file__).resolve().parent / "results"
SCENARIOS: Final = (
    "makespan",
    "throughput",
    "memory",
    "faults",
    "limiters",
    "latency",
    "startup",
    "loops",
)


def _environment() -> dict[str, str]:
    """What the figures depend on: the machine and the versions."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "cpus": str(os.cpu_count()),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": version("aiohttp"),
        "bulkkm": version("bulkkm"),
        "commit": commit,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_at_start": _load(),
    }


def _load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the figures."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _progress(started: float) -> scenarios.Progress:
    """A progress printer for stderr, with the elapsed time."""

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    return say


def _problems(results: Results) -> list[str]:
    """Runs that left targets not added/present, or whose baseline clients failed."""
    problems = []
    for m in results.makespan:
        if m.not_done:
            problems.append(f"makespan {m.fleet}: {m.not_done} targets not added/present")
        problems += [
            f"netapp_ontap script, {s.threads} threads, {m.fleet}: {s.not_done} failures"
            for s in m.scripts
            if s.not_done
        ]
    if results.throughput and results.throughput.not_done:
        problems.append(f"throughput: {results.throughput.not_done} targets not added/present")
    if results.memory:
        problems += [
            f"memory {p.clusters} x {p.svms}: {p.not_done} targets not added/present "
            f"(exit code {p.exit_code}){': ' + p.log_tail if p.log_tail else ''}"
            for p in results.memory.points
            if p.not_done or p.exit_code != 0
        ]
    problems += [
        f"latency ({f.name}) {f.fleet}: {f.not_done} targets not added/present"
        for f in results.latency
        if f.not_done
    ]
    problems += [
        f"loops ({f.loop}) {f.fleet}: {f.not_done} targets not added/present"
        for f in results.loops
        if f.not_done
    ]
    if results.faults and results.faults.not_done:
        problems.append(f"faults: {results.faults.not_done} targets not added/present")
    return problems


def _json_safe(value: object) -> object:
    """NaN as null, for strict JSON readers."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _write(results: Results, problems: list[str], out: Path) -> None:
    """``latest.json`` (every figure, the goals, the problems), written whole."""
    document = {
        **dataclasses.asdict(results),
        "goals": [dataclasses.asdict(g) for g in goals(results)],
        "problems": problems,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".json.tmp")
    partial.write_text(json.dumps(_json_safe(document), indent=2) + "\n")
    os.replace(partial, out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 1 if a run left targets undone."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=tuple(SIZES), default="quick")
    parser.add_argument(
        "--only",
        action="append",
        choices=SCENARIOS,
        help="run only this scenario (repeatable; default: all)",
    )
    parser.add_argument(
        "--out", type=Path, help=f"the results (default: {RESULTS}/latest.json; smoke: none)"
    )
    parser.add_argument(
        "--plot", type=Path, help=f"the plot (default: {RESULTS}/makespan.png; smoke: none)"
    )
    parser.add_argument("--keep", type=Path, help="keep the fleets' files in this new directory")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    only = set(args.only or SCENARIOS)
    # A smoke run (CI) leaves the recorded results alone unless told where to write.
    keep = size.name != "smoke"
    out: Path | None = args.out or (RESULTS / "latest.json" if keep else None)
    plot: Path | None = args.plot or (RESULTS / "makespan.png" if keep else None)
    configure_logging(fmt="json", verbosity=-1)  # bulkkm's own warnings only, on stderr
    say = _progress(time.monotonic())
    environment = _environment()
    with tempfile.TemporaryDirectory(prefix="bulkkm-bench-") as scratch:
        work = args.keep or Path(scratch)
        results = Results(
            size=size.name,
            environment=environment,
            makespan=tuple(scenarios.makespan(size, work, say)) if "makespan" in only else (),
            throughput=scenarios.throughput(size, work, say) if "throughput" in only else None,
            memory=scenarios.memory(size, work, say) if "memory" in only else None,
            faults=scenarios.faults(size, work, say) if "faults" in only else None,
            limiters=tuple(scenarios.limiters(size, say)) if "limiters" in only else (),
            latency=tuple(scenarios.latency(size, work, say)) if "latency" in only else (),
            startup=scenarios.startup(size, work, say) if "startup" in only else None,
            loops=tuple(scenarios.loops(size, work, say)) if "loops" in only else (),
        )
    environment["load_at_end"] = _load()
    problems = _problems(results)
    # Files first: a closed stdout (``| head``) must not lose half an hour of measurements.
    if out is not None:
        _write(results, problems, out)
    if plot is not None and results.makespan:
        from bench.plot import plot_makespan  # noqa: PLC0415 -- matplotlib is slow to import

        env = results.environment
        note = f"{env['cpus']} CPUs shared by client and simulator; {env['date']}"
        plot_makespan(results.makespan, plot, note=note)
    print(render(results))
    if out is not None:
        print(f"\nresults: {out}")
    if plot is not None and results.makespan:
        print(f"plot: {plot}")
    for problem in problems:
        print(f"PROBLEM: {problem}", file=sys.stderr)
    return 1 if problems else 0
