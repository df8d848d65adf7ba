"""Running the engine for a person: signals, the report, the log, the progress view, the summary.

The CLI, the demo and (later) the service run a fleet through here; nothing here parses
arguments or talks to a cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from bulkkm import engine
from bulkkm.console import EventLog, ProgressView, Tally, render_summary
from bulkkm.events import RunFinished, Subscriber
from bulkkm.inventory import Inventory
from bulkkm.report import ReportWriter

__all__ = ["EXIT_INTERRUPTED", "run_with_console"]

EXIT_INTERRUPTED = 130


async def run_with_console(
    inventory: Inventory,
    options: engine.Options,
    *,
    report: Path | None,
    quiet: bool,
    extra: Sequence[Subscriber] = (),
) -> RunFinished:
    """Run the engine with the report, the log, the progress view and the closing summary."""
    writer = ReportWriter(report) if report is not None else None
    tally = Tally()
    subscribers: list[Subscriber] = [tally, EventLog(), *extra]
    if writer is not None:
        subscribers.insert(0, writer)
    if not quiet:
        subscribers.append(ProgressView(sys.stderr, live=sys.stderr.isatty()))
    try:
        summary = await _run_interruptible(inventory, options, subscribers)
    finally:
        if writer is not None:
            writer.close()
    if not quiet:
        render_summary(Console(), tally, summary, str(report) if report else None)
    return summary


async def _run_interruptible(
    inventory: Inventory, options: engine.Options, subscribers: list[Subscriber]
) -> RunFinished:
    """The engine under SIGINT/SIGTERM handlers: the first stops new work, a second exits now."""
    control = engine.RunControl()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if control.interrupted.is_set():
            os._exit(EXIT_INTERRUPTED)  # every report line already written is whole
        control.interrupt()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        return await engine.run(inventory, options, subscribers, control=control)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
