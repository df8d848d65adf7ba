"""What a person sees: engine events as log lines, a progress display, prompts, the summary.

All of it is made of subscribers to the engine's events; nothing here talks to a cluster.
Names that come from servers (SVMs, messages) pass ``printable`` before they reach a terminal.

On a terminal with readable logs, a live display (targets and clusters) sits at the bottom
of stderr and every log line prints above it, through the same rich console. With JSON logs,
or without a terminal, there is no live display: a ``progress`` log line every 5 seconds
(``BULKKM_PROGRESS_EVERY``) instead, so that a JSON line never shares a line with bar text.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import os
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import structlog

from bulkkm.codec import fields, timestamp, value_json
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    Retrying,
    RunFinished,
    RunStarted,
    TargetResult,
    TargetsKnown,
    WaveFinished,
    WaveStarted,
)
from bulkkm.inventory import Inventory
from bulkkm.logs import printable, reader_left
from bulkkm.summary import Summary, summary_lines

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

__all__ = [
    "DEFAULT_PROGRESS_EVERY",
    "PROGRESS_EVERY",
    "PROGRESS_EVERY_ENV",
    "EventLog",
    "LiveBar",
    "ProgressView",
    "RetryCount",
    "ask",
    "paused",
    "progress_every",
    "render_summary",
    "restore_terminal",
    "window_lines",
]

log = structlog.get_logger("bulkkm")
PROGRESS_EVERY_ENV: Final = "BULKKM_PROGRESS_EVERY"
DEFAULT_PROGRESS_EVERY: Final = 5.0


def progress_every(environ: Mapping[str, str] = os.environ) -> float:
    """Seconds between progress log lines: ``BULKKM_PROGRESS_EVERY`` when set, else 5.

    Read once, when bulkkm starts. A value that is not a number of seconds above zero is
    named on stderr and the default kept: a typo in a tuning variable should not stop a run
    (logging is not set up yet, so the line is plain text).
    """
    raw = environ.get(PROGRESS_EVERY_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_EVERY
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds) and seconds > 0:
        return seconds
    print(
        f"bulkkm: ignoring {PROGRESS_EVERY_ENV}={raw!r}: not a number of seconds above 0;"
        f" progress lines every {DEFAULT_PROGRESS_EVERY:g} s",
        file=sys.stderr,
    )
    return DEFAULT_PROGRESS_EVERY


PROGRESS_EVERY: Final = progress_every()
"""Seconds between progress log lines when there is no live display."""
DIGEST_FIRST: Final = 5
"""Warnings of one kind shown in full before the rest are folded into counts (without -v)."""
DIGEST_EVERY: Final = 30.0
"""Seconds between the counts of folded warnings."""
RATE_WINDOW: Final = 30.0
"""Seconds of recent work the rate (and so the ETA) is measured over."""
_RATE_STEP: Final = 0.25
"""Seconds of completions one sample of the rate holds: a few hundred samples per window."""
_SHOW_CURSOR: Final = "\x1b[?25h"


class EventLog:
    """Engine events as structured log lines; repeated per-target warnings folded into counts.

    Without ``-v``, the first few warnings of each kind (``target_blocked``, ``target_failed``,
    ``cluster_skipped`` …) are logged in full; the rest are counted by reason, the counts
    logged now and then and at the end. Every one of them is in the report.
    """

    def __init__(self, *, verbosity: int = 0) -> None:
        """``verbosity`` >= 1: log every warning."""
        self._fold = verbosity < 1
        self._debug = verbosity >= 1
        """Debug lines are made only when shown: per-target ones would cost on a big fleet."""
        self._shown: Counter[str] = Counter()
        self._folded: dict[str, Counter[str]] = {}
        self._since: dict[str, Counter[str]] = {}
        self._last_digest = time.monotonic()

    def __call__(self, event: Event) -> None:
        """Log what an operator would want to grep for later; values as the codec writes them."""
        match event:
            case RunStarted():
                log.info(
                    "run_started",
                    **fields(event, "run_id", "command", "dry_run", "clusters", "inventory"),
                )
            case ClusterDiscovered():
                if self._debug:
                    log.debug(
                        "cluster_discovered", **fields(event, "cluster", "version", "targets")
                    )
            case Retrying():
                if self._debug:
                    log.debug(
                        "retry_scheduled",
                        **fields(event, "cluster", "svm", "servers", "attempt"),
                        wait_seconds=round(event.wait, 2),
                        **_error_fields(event.error, "category", "code"),
                    )
            case TargetResult(outcome=Outcome.FAILED | Outcome.BLOCKED):
                name = f"target_{event.outcome.value}"
                reason = event.reason or (event.error.code if event.error else None)
                if self._folded_away(name, reason or "unknown"):
                    return
                log.warning(
                    name,
                    **fields(event, "cluster", "svm", "server", "reason", "attempts"),
                    **_error_fields(event.error, "code"),
                )
            case TargetResult():
                if self._debug:
                    log.debug(
                        "target_finished",
                        **fields(event, "cluster", "svm", "server", "outcome", "attempts"),
                    )
            case ClusterResult(reason="limit"):
                # The runner says in one line how many clusters --limit leaves out.
                if self._debug:
                    log.debug("cluster_left_out", **fields(event, "cluster", "reason"))
            case ClusterResult():
                name = f"cluster_{event.outcome.value}"
                if self._folded_away(name, event.reason or "unknown"):
                    return
                log.warning(
                    name, **fields(event, "cluster", "reason"), **_error_fields(event.error, "code")
                )
            case WaveStarted():
                log.info(
                    "wave_started", wave=event.number, of=event.of, clusters=len(event.clusters)
                )
            case WaveFinished():
                log.info(
                    "wave_finished",
                    wave=event.number,
                    **fields(event, "of", "targets", "failed", "counts", "stop"),
                )
            case RunFinished():
                self.close()
                log.info(
                    "run_finished",
                    **fields(
                        event,
                        "run_id",
                        "exit_code",
                        "duration_ms",
                        "counts",
                        "clusters_failed",
                        "stop_reason",
                    ),
                )
            case _:
                pass

    def _folded_away(self, name: str, reason: str) -> bool:
        """Count a warning; True when it is folded rather than logged."""
        if not self._fold:
            return False
        self._shown[name] += 1
        if self._shown[name] <= DIGEST_FIRST:
            return False
        if name not in self._folded:
            contextvars.Context().run(
                log.warning,
                "warnings_folded",
                warning=name,
                shown=DIGEST_FIRST,
                note="the rest are counted by reason (every one is in the report; -v shows all)",
            )
        self._folded.setdefault(name, Counter())[reason] += 1
        self._since.setdefault(name, Counter())[reason] += 1
        return True

    def tick(self) -> None:
        """Log the warnings folded since the last digest, when one is due."""
        now = time.monotonic()
        if not self._since or now - self._last_digest < DIGEST_EVERY:
            return
        self._last_digest = now
        for name, reasons in self._since.items():
            log.info("warnings_folded_since", warning=name, count=reasons.total(), **reasons)
        self._since.clear()

    def close(self) -> None:
        """Log the totals of every kind of folded warning (once)."""
        for name, reasons in self._folded.items():
            log.warning(
                f"{name}_not_shown", count=reasons.total(), by_reason=dict(reasons.most_common())
            )
        self._folded.clear()
        self._since.clear()


def _error_fields(error: ErrorInfo | None, *names: str) -> dict[str, object]:
    """A log line's error fields: ``names`` of the error, and its message as ``error``."""
    if error is None:
        return dict.fromkeys((*names, "error"))
    values = value_json(error)
    return {**{name: values[name] for name in names}, "error": values["message"]}


class RetryCount:
    """Retried errors by ``category code``: the one count the report does not hold."""

    def __init__(self) -> None:
        """Nothing counted yet."""
        self.retried: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        """Count a retry."""
        if isinstance(event, Retrying):
            error = event.error
            key = f"{error.category.value} {error.code}" if error.code else error.category.value
            self.retried[key] += 1


class ProgressView:
    """Where the run stands: targets and clusters done, rate, failures, an ETA.

    Fed by events; read by the live bar and by the runner's timer for ``progress`` lines.
    """

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.run_id = ""
        self.command = ""
        self.done = 0
        """Targets with an outcome, carried-over ones included."""
        self.carried = 0
        self.failed = 0
        self.known = 0
        """Targets of the clusters discovered so far."""
        self.final = False
        """Whether every cluster has been discovered (``known`` is the run's total)."""
        self.clusters = 0
        self.clusters_discovered = 0
        self.clusters_done = 0
        self.clusters_skipped = 0
        self._started: set[str] = set()
        """Clusters seen at work: discovered, retrying their discovery, or failed."""
        self._open: dict[str, int] = {}
        self._clusters_failed = 0
        self._began = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque()
        """(when, targets this run had finished before then), one per ``_RATE_STEP`` with
        completions, over the last ``RATE_WINDOW``."""

    @property
    def clusters_started(self) -> int:
        """Clusters seen at work so far, those still discovering (retrying) included."""
        return len(self._started)

    def __call__(self, event: Event) -> None:
        """Count one event."""
        match event:
            case RunStarted():
                self.run_id, self.command, self.clusters = (
                    event.run_id,
                    event.command,
                    event.clusters,
                )
                self._began = time.monotonic()
            case Retrying():
                # A cluster whose discovery is retried (a dead one, for half a minute) is at
                # work: without this the display showed nothing in progress meanwhile.
                self._started.add(event.cluster)
            case ClusterDiscovered():
                if not self.final:  # the last cluster's TargetsKnown comes before this event
                    self.known += event.targets
                self.clusters_discovered += 1
                self._started.add(event.cluster)
                self._open[event.cluster] = event.targets
                self._close_if_done(event.cluster)
            case TargetsKnown():
                self.final = True
                self.known = event.targets
            case WaveStarted():
                # The pause before a wave, and the waves a resumed run found done, are not
                # work: the rate starts again with the wave's first completion.
                self._samples.clear()
            case TargetResult():
                if not event.carried_over:
                    self._sample()
                self.done += 1
                self.carried += event.carried_over
                self.failed += event.outcome is Outcome.FAILED
                if event.cluster in self._open:
                    self._open[event.cluster] -= 1
                    self._close_if_done(event.cluster)
            case ClusterResult(outcome=Outcome.FAILED):
                self.failed += 1
                self._started.add(event.cluster)
                self._clusters_failed += 1
                self.clusters_done += 1
            case ClusterResult():
                self.clusters_skipped += 1
            case _:
                pass

    def _close_if_done(self, cluster: str) -> None:
        """A cluster is done once each of its targets has an outcome."""
        if self._open.get(cluster, 1) <= 0:
            del self._open[cluster]
            self.clusters_done += 1

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self._began

    def _sample(self) -> None:
        """Note a completion's time, for the rate."""
        now = time.monotonic()
        if not self._samples or now - self._samples[-1][0] >= _RATE_STEP:
            self._samples.append((now, self.done - self.carried))

    @property
    def rate(self) -> float:
        """Targets this run finished per second over the last ``RATE_WINDOW`` seconds of work.

        Measured from the first completion in the window (and in the current wave), not
        from the start of the run: a pause between waves, or waves a resumed run found done,
        made the average since the start read a fraction of the speed (an ETA of 2.5 h for a
        wave that took a minute). Carried-over targets are instant and not counted. 0 when
        nothing finished lately.
        """
        now = time.monotonic()
        while self._samples and now - self._samples[0][0] > RATE_WINDOW:
            self._samples.popleft()
        if not self._samples:
            return 0.0
        since, before = self._samples[0]
        if len(self._samples) > 1:
            # What finished after the first step, over the time since it began: targets end
            # in bursts (a POST for several), and the first burst took no time of the window.
            before = self._samples[1][1]
        return (self.done - self.carried - before) / max(now - since, 1.0)

    def estimated_total(self) -> int | None:
        """The run's targets: exact once every cluster is discovered, else extrapolated."""
        if self.final:
            return self.known
        if not self.clusters_discovered:
            return None
        # Clusters still discovering (retrying) count as waiting: their targets are not known.
        ended = self.clusters_discovered + self._clusters_failed + self.clusters_skipped
        waiting = self.clusters - ended
        per_cluster = self.known / self.clusters_discovered
        return self.known + round(per_cluster * max(waiting, 0))

    def eta(self) -> float | None:
        """Seconds left at the current rate; None until that can be estimated (two steps of
        completions in the wave), or while nothing has finished for ``RATE_WINDOW`` seconds."""
        total = self.estimated_total()
        new = self.done - self.carried
        rate = self.rate
        if total is None or new < 1 or self.elapsed < 1.0 or len(self._samples) < 2:
            return None
        return max(total - self.done, 0) / rate

    def fields(self) -> dict[str, object]:
        """The ``progress`` line's fields."""
        eta = self.eta()
        return {
            "run_id": self.run_id,
            "done": self.done,
            "total": self.known if self.final else None,
            "total_estimated": self.estimated_total(),
            "failed": self.failed,
            "rate_per_s": round(self.rate, 1),
            "clusters_done": self.clusters_done,
            "clusters_started": self.clusters_started,
            "clusters_skipped": self.clusters_skipped,
            "clusters": self.clusters,
            "eta_s": None if eta is None else round(eta),
        }

    def log_line(self) -> None:
        """Log one ``progress`` line, outside any cluster's log context."""
        # A fresh context: the task that calls this may carry a cluster's context.
        contextvars.Context().run(log.info, "progress", **self.fields())


def _clock(seconds: float | None) -> str:
    """``1:02:03``, ``4:05``, or ``?``."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_active: LiveBar | None = None


class LiveBar:
    """The live display on a terminal: a targets bar and a clusters bar under the log lines."""

    def __init__(self, console: Console, view: ProgressView) -> None:
        """Draw ``view`` on ``console`` (the console log lines print through)."""
        # rich loads only for a live display (a terminal), not with JSON logs.
        from rich.progress import BarColumn, Progress, TextColumn  # noqa: PLC0415

        self.view = view
        self._progress = Progress(
            TextColumn("{task.description:>8}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[text]}"),
            console=console,
            transient=True,
            refresh_per_second=4,
        )
        self._targets: TaskID = self._progress.add_task("targets", total=None, text="")
        self._clusters: TaskID = self._progress.add_task("clusters", total=None, text="")
        self._running = False

    def start(self) -> None:
        """Show the display; it stays at the bottom until ``stop``."""
        global _active  # noqa: PLW0603 -- one terminal, one display: prompts must find it
        self.refresh()
        self._progress.start()
        self._running = True
        _active = self

    def stop(self) -> None:
        """Erase the display and show the cursor again."""
        global _active  # noqa: PLW0603
        if self._running:
            self._running = False
            self._progress.stop()
        if _active is self:
            _active = None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The display erased while the block runs (a prompt), then drawn again."""
        if not self._running:
            yield
            return
        self._running = False
        self._progress.stop()
        try:
            yield
        finally:
            self._progress.start()
            self._running = True

    def refresh(self) -> None:
        """Bring the bars up to date with the view."""
        v = self.view
        total = v.known if v.final else v.estimated_total()
        about = "" if v.final or total is None else "~"
        text = (
            f"{v.done}/{about}{total if total is not None else '?'}  {v.rate:.0f}/s  "
            f"failed {v.failed}  elapsed {_clock(v.elapsed)}  eta {_clock(v.eta())}"
        )
        self._progress.update(
            self._targets,
            completed=v.done,
            total=total if v.final else None,
            text=text,
            description=v.command or "targets",
        )
        skipped = f", {v.clusters_skipped} skipped" if v.clusters_skipped else ""
        self._progress.update(
            self._clusters,
            completed=v.clusters_done,
            total=v.clusters or None,
            text=(
                f"{v.clusters_done} done, {v.clusters_started} started of {v.clusters} "
                f"clusters{skipped}"
            ),
        )

    def __call__(self, event: Event) -> None:
        """Redraw after events that move the counts."""
        if isinstance(event, TargetResult | ClusterResult | ClusterDiscovered | TargetsKnown):
            self.refresh()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """The live display (if one is drawn) erased while the block runs."""
    if _active is None:
        yield
        return
    with _active.paused():
        yield


def restore_terminal() -> None:
    """Erase the live display and show the cursor: called on every way out, even ``os._exit``."""
    if _active is not None:
        with contextlib.suppress(Exception):  # on the way out: never fail to exit
            _active.stop()
    if sys.stderr.isatty():
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(_SHOW_CURSOR)
            sys.stderr.flush()


async def ask(question: str) -> str:
    """Ask on the terminal with the live display paused; the answer line (``""`` at EOF, or
    once the terminal has hung up: no answer is no).

    stdin is watched by the event loop rather than read in a thread, so that an interrupt
    while the question waits leaves no thread blocked on the terminal.
    """
    try:
        return await _ask(question)
    except OSError as exc:
        if not reader_left(exc):
            raise
        return ""


async def _ask(question: str) -> str:
    """``ask``'s work; OSError once the terminal has gone."""
    loop = asyncio.get_running_loop()
    with paused():
        sys.stderr.write(question)
        sys.stderr.flush()
        ready: asyncio.Future[None] = loop.create_future()
        fd = sys.stdin.fileno()

        def answered() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, answered)
        try:
            await ready
        except asyncio.CancelledError:
            sys.stderr.write("\n")  # the next line must not start after the question
            raise
        finally:
            loop.remove_reader(fd)
        return sys.stdin.readline()


def render_summary(
    console: Console,
    summary: Summary,
    *,
    report: Path | None,
    retried: Mapping[str, int] | None = None,
    more: str = "",
) -> None:
    """The closing summary, from the same aggregate as ``bulkkm report summarize``."""
    from rich.text import Text  # noqa: PLC0415 -- rich loads only where it draws

    for line in summary_lines(summary, report=report, retried=retried, more=more):
        console.print(Text(printable(line)), soft_wrap=True, highlight=False)
    if report is not None:
        console.print(Text(printable(f"report: {report}")), soft_wrap=True)


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
