"""How a command-line run is stopped: Ctrl-C, SIGTERM, and a terminal that went away.

SIGINT and SIGTERM call the run's stop. SIGHUP (a dropped SSH session) first points the
streams that were that terminal at /dev/null, since writing to a hung-up terminal fails
(EIO), then stops the run the same way; unless SIGHUP was ignored when bulkkm started
(``nohup``): then the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator

from bulkkm.logs import reader_gone

__all__ = ["handled"]


@contextlib.contextmanager
def handled(
    on_stop: Callable[[], None], on_hangup: Callable[[], None]
) -> Iterator[tuple[signal.Signals, ...]]:
    """While the block runs, SIGINT and SIGTERM call ``on_stop`` and SIGHUP ``on_hangup``
    (after the terminal's streams are silenced); yields the signals handled."""
    loop = asyncio.get_running_loop()
    # Which streams are the terminal, asked now: once it has hung up, isatty() says no.
    terminals = [stream for stream in (sys.stdout, sys.stderr) if stream.isatty()]

    def hung_up() -> None:
        for stream in terminals:
            reader_gone(stream)
        on_hangup()

    signals = [signal.SIGINT, signal.SIGTERM]
    for sig in signals:
        loop.add_signal_handler(sig, on_stop)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        loop.add_signal_handler(signal.SIGHUP, hung_up)
        signals.append(signal.SIGHUP)
    try:
        yield tuple(signals)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
