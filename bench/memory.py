"""Peak memory of ``bulkkm apply``, run as a user runs it: a process of its own.

The peak RSS comes from ``wait4`` on that very process (``ru_maxrss``, kilobytes on Linux),
not from ``RUSAGE_CHILDREN``, which would also count the simulator once it has exited.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

from bench.bulk import DONE

__all__ = ["ApplyRun", "apply_process"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApplyRun:
    """One ``bulkkm apply`` process: its peak RSS, times and outcomes."""

    exit_code: int
    peak_rss_mb: float
    seconds: float
    cpu_seconds: float
    outcomes: dict[str, int]
    clusters_failed: int
    complete: bool
    """Whether the report has its summary line (the run finished)."""

    @property
    def targets(self) -> int:
        """Targets the report counts."""
        return sum(self.outcomes.values())

    @property
    def not_done(self) -> int:
        """Targets not ``added`` or ``present``, plus clusters that could not be discovered."""
        bad = sum(n for outcome, n in self.outcomes.items() if outcome not in DONE)
        return bad + self.clusters_failed


def apply_process(inventory: Path, report: Path) -> ApplyRun:
    """Run ``bulkkm apply`` on the inventory and wait for it; read its report's summary."""
    command = [sys.executable, "-m", "bulkkm", "apply", str(inventory), "--report", str(report)]
    command += ["-q", "--log-format", "json"]
    started = time.perf_counter()
    with open(report.with_suffix(".log"), "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    seconds = time.perf_counter() - started
    summary = _summary(report)
    counts, failed = summary.get("counts"), summary.get("clusters_failed")
    return ApplyRun(
        exit_code=process.returncode,
        peak_rss_mb=usage.ru_maxrss / 1024,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        outcomes={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
        clusters_failed=failed if isinstance(failed, int) else 0,
        complete=bool(summary),
    )


def _summary(report: Path) -> dict[str, object]:
    """The report's ``summary`` line ({} when the run died before writing it)."""
    try:
        last = report.read_bytes().rstrip().rsplit(b"\n", 1)[-1]
        line = orjson.loads(last)
    except (OSError, orjson.JSONDecodeError):
        return {}
    return line if isinstance(line, dict) and line.get("type") == "summary" else {}
