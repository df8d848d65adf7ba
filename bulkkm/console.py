"""What a person sees: engine events as log lines, a progress bar, and the closing summary.

All of it is made of subscribers to the engine's events; nothing here talks to a cluster.
Names that come from servers (SVMs, messages) pass ``printable`` before they reach a terminal.
"""

from __future__ import annotations

import contextvars
import time
from collections import Counter
from datetime import datetime
from typing import Final, TextIO

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    Event,
    Outcome,
    Retrying,
    RunFinished,
    RunStarted,
    TargetResult,
    WaveFinished,
    WaveStarted,
)
from bulkkm.inventory import Inventory
from bulkkm.logs import printable
from bulkkm.report import ReportSummary, timestamp

__all__ = [
    "EventLog",
    "ProgressView",
    "Tally",
    "render_summary",
    "summary_lines",
    "window_lines",
]

log = structlog.get_logger("bulkkm")
PROGRESS_EVERY: Final = 5.0
"""Seconds between progress log lines when stderr is not a terminal."""


class EventLog:
    """Engine events as structured log lines."""

    def __call__(self, event: Event) -> None:
        """Log what an operator would want to grep for later."""
        match event:
            case RunStarted():
                log.info(
                    "run_started",
                    run_id=event.run_id,
                    command=event.command,
                    dry_run=event.dry_run,
                    clusters=event.clusters,
                    inventory=event.inventory,
                )
            case ClusterDiscovered():
                log.debug(
                    "cluster_discovered",
                    cluster=event.cluster,
                    version=event.version,
                    targets=event.targets,
                )
            case Retrying():
                log.debug(
                    "retry_scheduled",
                    cluster=event.cluster,
                    svm=event.svm,
                    servers=list(event.servers),
                    attempt=event.attempt,
                    wait_seconds=round(event.wait, 2),
                    category=event.error.category.value,
                    code=event.error.code,
                    error=event.error.message,
                )
            case TargetResult(outcome=Outcome.FAILED | Outcome.BLOCKED):
                log.warning(
                    f"target_{event.outcome.value}",
                    cluster=event.cluster,
                    svm=event.svm,
                    server=event.server,
                    reason=event.reason,
                    attempts=event.attempts,
                    code=event.error.code if event.error else None,
                    error=event.error.message if event.error else None,
                )
            case TargetResult():
                log.debug(
                    "target_finished",
                    cluster=event.cluster,
                    svm=event.svm,
                    server=event.server,
                    outcome=event.outcome.value,
                    attempts=event.attempts,
                )
            case ClusterResult():
                log.warning(
                    f"cluster_{event.outcome.value}",
                    cluster=event.cluster,
                    reason=event.reason,
                    code=event.error.code if event.error else None,
                    error=event.error.message if event.error else None,
                )
            case WaveStarted():
                log.info(
                    "wave_started", wave=event.number, of=event.of, clusters=len(event.clusters)
                )
            case WaveFinished():
                log.info(
                    "wave_finished",
                    wave=event.number,
                    of=event.of,
                    targets=event.targets,
                    failed=event.failed,
                    counts=event.counts,
                    stop=event.stop,
                )
            case RunFinished():
                log.info(
                    "run_finished",
                    run_id=event.run_id,
                    exit_code=event.exit_code,
                    duration_ms=event.duration_ms,
                    counts=event.counts,
                    clusters_failed=event.clusters_failed,
                    stop_reason=event.stop_reason,
                )
            case _:
                pass


class Tally:
    """Counts kept for the closing summary: outcomes, error codes, slowest clusters."""

    def __init__(self) -> None:
        """Nothing counted yet."""
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        """Final errors: targets (and clusters) that ended with them."""
        self.retried: Counter[str] = Counter()
        """Errors that were retried, by attempt."""
        self.clusters_total = 0
        self.clusters_failed: list[str] = []
        self.span: dict[str, tuple[datetime, datetime]] = {}
        self.targets_known = 0

    def __call__(self, event: Event) -> None:
        """Count one event."""
        match event:
            case RunStarted():
                self.clusters_total = event.clusters
            case ClusterDiscovered():
                self.targets_known += event.targets
            case Retrying():
                self.retried[_error_key(event.error.category.value, event.error.code)] += 1
            case TargetResult():
                self.outcomes[event.outcome.value] += 1
                if event.error is not None:
                    key = event.error.code or event.reason
                    self.errors[_error_key(event.error.category.value, key)] += 1
                if not event.carried_over:
                    first, last = self.span.get(
                        event.cluster, (event.started_at, event.finished_at)
                    )
                    self.span[event.cluster] = (
                        min(first, event.started_at),
                        max(last, event.finished_at),
                    )
            case ClusterResult(outcome=Outcome.FAILED):
                self.clusters_failed.append(event.cluster)
                if event.error is not None:
                    key = event.error.code or event.reason
                    self.errors[_error_key(event.error.category.value, key)] += 1
            case _:
                pass

    def slowest(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` clusters that took longest, in seconds."""
        spans = ((c, (last - first).total_seconds()) for c, (first, last) in self.span.items())
        return sorted(spans, key=lambda item: item[1], reverse=True)[:n]


def _error_key(category: str, detail: str | None) -> str:
    """``transient 65536921``, ``precondition too_many_servers`` or just ``transport``."""
    return f"{category} {detail}" if detail else category


class ProgressView:
    """Live progress: a bar on a terminal, a log line every few seconds otherwise."""

    def __init__(self, stream: TextIO, *, live: bool) -> None:
        """``live``: draw a bar on ``stream`` (a terminal)."""
        self.run_id = ""
        self.done = 0
        self.failed = 0
        self.total = 0
        self.clusters = 0
        self.clusters_done = 0
        self._started = time.monotonic()
        self._last_log = self._started
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if live:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>6.0f}/s  failed {task.fields[failed]}"),
                TextColumn("clusters {task.fields[clusters]}"),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=Console(file=stream),
                transient=False,
            )

    def __call__(self, event: Event) -> None:
        """Advance on each outcome."""
        match event:
            case RunStarted():
                self.clusters = event.clusters
                self.run_id = event.run_id
                if self._bar is not None:
                    self._bar.start()
                    self._task = self._bar.add_task(
                        event.command, total=None, rate=0.0, failed=0, clusters=""
                    )
            case ClusterDiscovered():
                self.total += event.targets
                self.clusters_done += 1
            case ClusterResult():
                self.clusters_done += 1
                self.failed += event.outcome is Outcome.FAILED
            case TargetResult():
                self.done += 1
                self.failed += event.outcome is Outcome.FAILED
            case RunFinished():
                self._update()
                if self._bar is not None:
                    self._bar.stop()
                return
            case _:
                return
        self._update()

    def _update(self) -> None:
        """Redraw the bar, or log a progress line when one is due."""
        now = time.monotonic()
        rate = self.done / max(now - self._started, 1e-9)
        if self._bar is not None and self._task is not None:
            self._bar.update(
                self._task,
                completed=self.done,
                total=self.total or None,
                rate=rate,
                failed=self.failed,
                clusters=f"{self.clusters_done}/{self.clusters}",
            )
        elif now - self._last_log >= PROGRESS_EVERY:
            self._last_log = now
            eta = (
                (self.total - self.done) / rate
                if rate and self.clusters_done == self.clusters
                else None
            )
            # A fresh context: the event that triggered this line belongs to one cluster, the
            # progress line to the whole run.
            contextvars.Context().run(
                log.info,
                "progress",
                run_id=self.run_id,
                done=self.done,
                total=self.total,
                failed=self.failed,
                rate_per_s=round(rate, 1),
                clusters_discovered=self.clusters_done,
                clusters=self.clusters,
                eta_s=None if eta is None else round(eta),
            )


def render_summary(
    console: Console, tally: Tally, summary: RunFinished, report: str | None
) -> None:
    """The closing summary: outcomes, top error codes, slowest clusters, where the report is."""
    outcomes = Table(title="Outcomes", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("targets", justify="right")
    for outcome, count in tally.outcomes.most_common():
        outcomes.add_row(outcome, str(count))
    if tally.clusters_failed:
        outcomes.add_row("clusters failed", str(len(tally.clusters_failed)))
    console.print(outcomes)
    if tally.errors or tally.retried:
        errors = Table(title="Top errors", title_justify="left")
        errors.add_column("error")
        errors.add_column("final", justify="right")
        errors.add_column("retried", justify="right")
        top = (tally.errors + tally.retried).most_common(8)
        for key, _ in top:
            errors.add_row(Text(printable(key)), str(tally.errors[key]), str(tally.retried[key]))
        console.print(errors)
    slowest = tally.slowest()
    if slowest:
        table = Table(title="Slowest clusters", title_justify="left")
        table.add_column("cluster")
        table.add_column("seconds", justify="right")
        for cluster, seconds in slowest:
            table.add_row(Text(printable(cluster)), f"{seconds:.2f}")
        console.print(table)
    if tally.clusters_failed:
        names = ", ".join(printable(c) for c in tally.clusters_failed[:10])
        more = (
            f" (+{len(tally.clusters_failed) - 10} more)" if len(tally.clusters_failed) > 10 else ""
        )
        console.print(Text(f"clusters not discovered: {names}{more}"))
    stop = f", stopped: {summary.stop_reason}" if summary.stop_reason else ""
    console.print(
        Text(
            f"{sum(tally.outcomes.values())} targets in {summary.duration_ms / 1000:.1f} s, "
            f"exit code {summary.exit_code}{stop}"
        )
    )
    if report:
        console.print(Text(f"report: {report}"))


def summary_lines(result: ReportSummary) -> list[str]:
    """``bulkkm report summarize`` as text: outcomes, errors, clusters, waves."""
    run = result.run or {}
    lines = [f"run {run.get('run_id')} ({run.get('command')}) started {run.get('started_at')}"]
    if not result.complete:
        lines.append("no summary line: the run did not finish; counts are of the lines written")
    sections: list[tuple[str, dict[str, int]]] = [
        ("outcomes", result.outcomes),
        ("errors", result.errors),
        ("clusters without target lines", result.clusters_not_done),
        ("clusters with targets not done", result.failing_clusters),
    ]
    sections += [(f"wave {number}", counts) for number, counts in result.waves.items()]
    for title, counts in sections:
        if counts:
            lines.append(f"{title}:")
            lines += [f"  {key:<44} {count:>8}" for key, count in list(counts.items())[:20]]
    return lines


def window_lines(inventory: Inventory, now: datetime) -> list[str]:
    """Each maintenance window of the fleet, when it next opens and how many clusters it holds."""
    windows = Counter(c.window for c in inventory.clusters if c.window is not None)
    if not windows:
        return []
    lines = ["maintenance windows (apply changes a cluster only inside its window):"]
    for window, count in sorted(windows.items(), key=lambda item: item[0].next_opening(now)):
        opens = window.next_opening(now)
        when = "open now" if opens == now else f"next opens {timestamp(opens)}"
        lines.append(f"  {window}: {when} ({count} clusters)")
    return lines
