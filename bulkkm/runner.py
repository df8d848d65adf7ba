"""Running the engine for a person: signals, the report, the log, the progress view, the summary.

The CLI, the demo and the service run a fleet through here; nothing here parses arguments
or talks to a cluster. ``run_headless`` is the service's: the report and the caller's
subscribers, no console, no signal handlers.

The closing summary is read back from the report, so that it is exactly what
``bulkkm report summarize`` says of the same run; a run without ``--report`` writes one to
a temporary folder for that, removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import structlog

from bulkkm import engine, interrupts
from bulkkm.console import (
    PROGRESS_EVERY,
    EventLog,
    LiveBar,
    ProgressView,
    RetryCount,
    render_summary,
    restore_terminal,
)
from bulkkm.events import RunFinished, Subscriber
from bulkkm.inventory import Inventory
from bulkkm.logs import log_setup, output, printable
from bulkkm.report import ReportWriter, read_lines
from bulkkm.summary import Aggregator

__all__ = ["EXIT_INTERRUPTED", "run_headless", "run_with_console"]

EXIT_INTERRUPTED = 130
LIVE_REFRESH = 1.0
"""Seconds between redraws of the live display's rate and ETA when no event comes."""

log = structlog.get_logger("bulkkm")


async def run_with_console(
    inventory: Inventory,
    options: engine.Options,
    *,
    report: ReportWriter | None,
    quiet: bool,
    extra: Sequence[Subscriber] = (),
    show_targets: bool = False,
) -> RunFinished:
    """Run the engine with the report, the log, the progress view and the closing summary.

    ``show_targets``: print one line per target (``plan --show-targets``) before the summary.
    """
    setup = log_setup()
    async with _report_for(report, quiet=quiet and not show_targets) as writer:
        events = EventLog(verbosity=setup.verbosity)
        retries = RetryCount()
        view = ProgressView()
        subscribers: list[Subscriber] = [view, retries, events, *extra]
        if writer is not None:
            subscribers.insert(0, writer)
        live = None
        if not quiet and setup.console is not None and setup.terminal:
            live = LiveBar(setup.console, view)
            subscribers.append(live)
        if options.skipped_clusters:
            log.info(
                "clusters_left_out",
                reason="limit",
                clusters=len(options.skipped_clusters),
                in_run=len(inventory.clusters),
            )
        ticker = asyncio.create_task(_tick(view, events, live, progress_lines=not quiet))
        try:
            if live is not None:
                live.start()
            summary = await _run_interruptible(inventory, options, subscribers)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if live is not None:
                live.stop()
            if writer is not None:
                writer.close()
        if writer is not None and (show_targets or not quiet):
            _closing(writer.path, report, retries, show_targets=show_targets, quiet=quiet)
    return summary


async def run_headless(
    inventory: Inventory,
    options: engine.Options,
    *,
    report: ReportWriter | None,
    extra: Sequence[Subscriber] = (),
    control: engine.RunControl | None = None,
) -> RunFinished:
    """Run the engine with the report and ``extra`` subscribers; the report is closed after.

    No console, no summary, no signal handlers: ``control`` stops the run from outside.
    """
    subscribers: list[Subscriber] = [*extra] if report is None else [report, *extra]
    try:
        return await engine.run(inventory, options, subscribers, control=control)
    finally:
        if report is not None:
            report.close()


@contextlib.asynccontextmanager
async def _report_for(
    report: ReportWriter | None, *, quiet: bool
) -> AsyncIterator[ReportWriter | None]:
    """The run's report writer: the caller's, or one in a temporary folder for the summary."""
    if report is not None or quiet:
        yield report
        return
    with tempfile.TemporaryDirectory(prefix="bulkkm-") as folder:
        yield ReportWriter.create(Path(folder) / "report.jsonl")


def _closing(
    path: Path, report: ReportWriter | None, retries: RetryCount, *, show_targets: bool, quiet: bool
) -> None:
    """The per-target list (if asked for) and the closing summary, read back from the report."""
    from rich.text import Text  # noqa: PLC0415 -- rich loads only where it draws

    out = output(soft_wrap=True, highlight=False)
    aggregate = Aggregator()
    for line in read_lines(path):
        aggregate(line)
        if show_targets and line["type"] == "target":
            svm = line.get("svm") or "(cluster)"
            why = line.get("reason") or ""
            text = f"{line['cluster']}  {svm}  {line['server']}  {line['outcome']}  {why}"
            out.print(Text(printable(text.rstrip())))
    if quiet:
        return
    kept = report.path if report is not None else None
    more = (
        f" (bulkkm report summarize {kept} --all)"
        if kept is not None
        else " (--report FILE keeps every one)"
    )
    render_summary(out, aggregate.result(), report=kept, retried=retries.retried, more=more)


async def _tick(
    view: ProgressView, events: EventLog, live: LiveBar | None, *, progress_lines: bool
) -> None:
    """The timer: redraw the live display, or log a ``progress`` line every 5 s; fold digests."""
    while True:
        await asyncio.sleep(LIVE_REFRESH if live is not None else PROGRESS_EVERY)
        if live is not None:
            live.refresh()
        elif progress_lines:
            view.log_line()
        events.tick()


async def _run_interruptible(
    inventory: Inventory, options: engine.Options, subscribers: list[Subscriber]
) -> RunFinished:
    """The engine under SIGINT/SIGTERM handlers: the first stops new work, a second exits now.

    SIGHUP (the terminal went away: a dropped SSH session) stops the run as SIGTERM does,
    after pointing the streams that were that terminal at /dev/null: the report still gets
    its summary line. Unless SIGHUP was ignored when bulkkm started (``nohup``): then the
    run goes on.
    """
    control = engine.RunControl()

    def on_signal() -> None:
        if control.interrupted.is_set():
            restore_terminal()  # the live display hid the cursor
            os._exit(EXIT_INTERRUPTED)  # every report line already written is whole
        if sys.stderr.isatty():
            log.warning("interrupt", note="finishing in-flight work; Ctrl-C again to exit now")
        control.interrupt()

    def on_hangup() -> None:
        if not control.interrupted.is_set():
            log.warning("hangup", note="the terminal went away: finishing in-flight work")
            control.interrupt()

    with interrupts.handled(on_signal, on_hangup):
        return await engine.run(inventory, options, subscribers, control=control)
