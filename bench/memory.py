"""Peak memory of ``bulkkm apply``, run as a user runs it: a process of its own.

The peak RSS is the process's ``VmHWM`` (Linux), polled from ``/proc`` while it runs.
``ru_maxrss`` (from ``wait4`` or ``RUSAGE_CHILDREN``) would not do: a child started with
vfork, as ``subprocess`` starts it, inherits the high-water mark of the parent's memory at
``exec``, and this parent has just run whole rollouts in-process. CPU times come from
``wait4`` on that very process.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Final

import orjson

from bench.bulk import DONE

__all__ = ["ApplyRun", "apply_process"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApplyRun:
    """One ``bulkkm apply`` process: its peak RSS, times and outcomes."""

    exit_code: int
    peak_rss_mb: float
    seconds: float
    """Wall time of the process, from its start to its exit."""
    run_seconds: float
    """The run's own duration (the report's summary: from the run's start to its end)."""
    cpu_seconds: float
    outcomes: dict[str, int]
    clusters_failed: int
    complete: bool
    """Whether the report has its summary line (the run finished)."""
    log_tail: str
    """The end of the process's output when it did not finish (for the error message)."""

    @property
    def targets(self) -> int:
        """Targets the report counts."""
        return sum(self.outcomes.values())

    @property
    def not_done(self) -> int:
        """Targets not ``added`` or ``present``, plus clusters that could not be discovered."""
        bad = sum(n for outcome, n in self.outcomes.items() if outcome not in DONE)
        return bad + self.clusters_failed


def apply_process(inventory: Path, report: Path, *, env: dict[str, str] | None = None) -> ApplyRun:
    """Run ``bulkkm apply`` on the inventory and wait for it; read its report's summary."""
    command = [sys.executable, "-m", "bulkkm", "apply", str(inventory), "--report", str(report)]
    command += ["-q", "--log-format", "json"]
    log = report.with_suffix(".log")
    started = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    watcher = _PeakWatcher(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    seconds = time.perf_counter() - started
    peak_kb = watcher.stop()
    summary = _summary(report)
    counts, failed = summary.get("counts"), summary.get("clusters_failed")
    duration = summary.get("duration_ms")
    return ApplyRun(
        exit_code=process.returncode,
        peak_rss_mb=peak_kb / 1024,
        seconds=seconds,
        run_seconds=duration / 1000 if isinstance(duration, int) else seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        outcomes={str(k): int(v) for k, v in counts.items()} if isinstance(counts, dict) else {},
        clusters_failed=failed if isinstance(failed, int) else 0,
        complete=bool(summary),
        log_tail="" if summary else log.read_text(errors="replace")[-1500:],
    )


class _PeakWatcher:
    """Polls a process's ``VmHWM`` (peak RSS, kB) from a thread until it is gone."""

    INTERVAL: Final = 0.02

    def __init__(self, pid: int) -> None:
        """Start polling ``pid``."""
        self._status = Path(f"/proc/{pid}/status")
        self._peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        """Keep the largest ``VmHWM`` seen; a zombie's status no longer has one."""
        while not self._done.is_set():
            try:
                text = self._status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    self._peak = max(self._peak, int(line.split()[1]))
            self._done.wait(self.INTERVAL)

    def stop(self) -> int:
        """Stop polling; the peak seen, in kB."""
        self._done.set()
        self._thread.join()
        return self._peak


def _summary(report: Path) -> dict[str, object]:
    """The report's ``summary`` line ({} when the run died before writing it)."""
    try:
        last = report.read_bytes().rstrip().rsplit(b"\n", 1)[-1]
        line = orjson.loads(last)
    except (OSError, orjson.JSONDecodeError):
        return {}
    return line if isinstance(line, dict) and line.get("type") == "summary" else {}
