"""What a person sees of a rollout across regions: the in-process run's own display.

The coordinator publishes the events it reads back from the workflow to the same
subscribers as an in-process run: the progress view (a live bar on a terminal, a
``progress`` log line every 5 seconds otherwise), the event log (warnings folded as
in-process), and at the end the closing summary read back from the report. Results arrive
a chunk of clusters at a time, so the bars move by chunks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final, NoReturn

from bulkkm.console import (
    PROGRESS_EVERY,
    EventLog,
    LiveBar,
    ProgressView,
    paused,
    render_summary,
    restore_terminal,
)
from bulkkm.events import Subscriber
from bulkkm.logs import log_setup, output
from bulkkm.report import read_lines
from bulkkm.summary import Aggregator

__all__ = ["Display", "leave"]

LIVE_REFRESH: Final = 1.0
"""Seconds between redraws of the live bar's rate and ETA when no result comes."""


class Display:
    """The progress view, the event log and the closing summary of one coordinator."""

    def __init__(self, say: Callable[[str], None]) -> None:
        """Set up as the logging was (``-q``: no progress, no summary)."""
        setup = log_setup()
        self._say = say
        self.quiet = setup.verbosity < 0
        self.view = ProgressView()
        self.events = EventLog(verbosity=setup.verbosity)
        self.live: LiveBar | None = None
        if not self.quiet and setup.readable and setup.terminal and setup.console is not None:
            self.live = LiveBar(setup.console, self.view)
        self._ticker: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> list[Subscriber]:
        """What the coordinator's events go to, besides the report."""
        return [self.view, self.events, *([self.live] if self.live is not None else [])]

    def say(self, line: str) -> None:
        """A message for the operator, with the live bar out of its way."""
        with paused():
            self._say(line)

    async def __aenter__(self) -> Display:
        """Show the live bar (on a terminal) and start the timer."""
        if self.live is not None:
            self.live.start()
        self._ticker = asyncio.create_task(self._tick())
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the timer and erase the live bar."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.live is not None:
            self.live.stop()

    async def _tick(self) -> None:
        """Redraw the live bar, or log a ``progress`` line every 5 s; fold digests."""
        while True:
            await asyncio.sleep(LIVE_REFRESH if self.live is not None else PROGRESS_EVERY)
            if self.live is not None:
                self.live.refresh()
            elif not self.quiet:
                self.view.log_line()
            self.events.tick()

    def summary(self, report: Path, *, retried: Mapping[str, int] | None = None) -> None:
        """The closing summary, read back from the report (as ``report summarize`` says it),
        with the retries the workers counted (as in-process)."""
        if self.quiet:
            return
        aggregate = Aggregator()
        for line in read_lines(report):
            aggregate(line)
        out = output(soft_wrap=True, highlight=False)
        more = f" (bulkkm report summarize {report} --all)"
        render_summary(out, aggregate.result(), report=report, retried=retried, more=more)


def leave(code: int) -> NoReturn:
    """Exit now with ``code``, output flushed, skipping the interpreter's finalization.

    Once a client has connected, the SDK's Rust threads can abort CPython's finalization
    ("PyGILState_Release", exit -6 instead of the run's code: temporalio/sdk-python#300,
    seen here about one run in three). Every report line is written and closed by then.
    """
    restore_terminal()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
