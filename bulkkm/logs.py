"""Logging setup: structlog to stderr, JSON lines or a readable console, secrets scrubbed.

Every event passes ``scrub`` last before rendering: values under secret-looking keys are
masked, every known secret value is replaced wherever it appears, and (for the console)
control characters from server-supplied names cannot drive the terminal.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import logging
import os
import sys
from collections.abc import MutableMapping
from typing import IO, TYPE_CHECKING, Final, TextIO

import orjson
import structlog

from bulkkm.secret import redact

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "LogSetup",
    "configure_logging",
    "log_setup",
    "output",
    "printable",
    "reader_gone",
    "reader_left",
    "scrub",
]

_SECRET_KEYS: Final = frozenset({"password", "authorization", "secret", "token", "passwd"})
_MASK: Final = "********"


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape, safe on any terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


def _clean(value: object, console: bool) -> object:
    """One logged value, scrubbed: every string in it (dict keys too) redacted; for the
    console, control characters escaped (and redacted again: an escape can spell a secret)."""
    if isinstance(value, str):
        value = redact(value)
        if console and not value.isprintable():
            value = redact(printable(value))
        return value
    if isinstance(value, bool | int | float | None):
        return value
    if isinstance(value, BaseException | bytes):
        return _clean(str(value), console)
    if isinstance(value, dict):
        return {
            _clean(k, console) if isinstance(k, str) else k: (
                _MASK if str(k).lower() in _SECRET_KEYS else _clean(v, console)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, console) for v in value]
    # Anything else is rendered by its str or repr: shown as text when either holds a secret.
    for text in (str(value), repr(value)):
        if redact(text) != text:
            return _clean(text, console)
    return value


def scrub(console: bool) -> structlog.types.Processor:
    """The last-line-of-defence processor: no secret, no control character, gets through."""

    def processor(
        _logger: object, _name: str, event: MutableMapping[str, object]
    ) -> MutableMapping[str, object]:
        for key, value in event.items():
            event[key] = _MASK if key.lower() in _SECRET_KEYS else _clean(value, console)
        return event

    return processor


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LogSetup:
    """How logging was set up: what the progress display and the digest must fit around."""

    console: Console | None
    """The rich console log lines go through (stderr); a live display must share it.
    None with JSON lines, which no live display shares (rich is then not even imported)."""
    readable: bool
    """Console format (True) or JSON lines (False)."""
    verbosity: int
    """-1 with ``-q``, 0 by default, 1 and more with ``-v``."""
    terminal: bool
    """Whether the log stream is a terminal."""


_setup: LogSetup | None = None


def log_setup() -> LogSetup:
    """The current setup (JSON on stderr when ``configure_logging`` was never called)."""
    if _setup is None:
        return LogSetup(console=None, readable=False, verbosity=0, terminal=False)
    return _setup


def reader_gone(stream: IO[str]) -> None:
    """Point ``stream`` at /dev/null once its reader has left (``| head``), so that writing
    to it, and flushing it at exit, no longer fails."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


def reader_left(exc: OSError) -> bool:
    """Whether a write failed because nobody reads the stream any more: a broken pipe
    (``| head`` left), or a terminal that hung up (EIO: a dropped SSH session)."""
    return isinstance(exc, BrokenPipeError) or exc.errno in (errno.EPIPE, errno.EIO)


def output(
    *,
    file: IO[str] | None = None,
    stderr: bool = False,
    soft_wrap: bool = False,
    highlight: bool = True,
) -> Console:
    """A rich console that goes quiet when its reader leaves, instead of ending the process.

    rich's own answer to a broken pipe is ``SystemExit(1)``: raised inside a run, it would
    end a rollout half-way because someone closed ``| head``. The run goes on; the report
    holds everything.
    """
    return _output_class()(file=file, stderr=stderr, soft_wrap=soft_wrap, highlight=highlight)


@functools.cache
def _output_class() -> type[Console]:
    """The class of ``output``'s consoles, made on first use: rich loads only when drawn with."""
    from rich.console import Console  # noqa: PLC0415 -- only a readable output needs rich

    class Output(Console):
        """A rich console that stops writing once its reader has left."""

        def on_broken_pipe(self) -> None:
            """Stop writing to a stream nobody reads."""
            self.quiet = True
            reader_gone(self.file)

        def _check_buffer(self) -> None:
            """rich's, with a terminal that hung up (EIO) taken as a broken pipe.

            rich answers only ``BrokenPipeError`` with ``on_broken_pipe``; every write it
            makes (prints, the live display, cursor controls) passes here.
            """
            try:
                super()._check_buffer()
            except OSError as exc:
                if not reader_left(exc):
                    raise
                self.on_broken_pipe()

    return Output


class _PipeSafeLogger:
    """A structlog logger writing JSON lines to a stream, silent once its reader has left."""

    def __init__(self, stream: TextIO) -> None:
        """Write to ``stream``."""
        self._stream = stream
        self._gone = False

    def msg(self, message: str) -> None:
        """One rendered log line, flushed."""
        if self._gone:
            return
        try:
            self._stream.write(message + "\n")
            self._stream.flush()
        except OSError as exc:
            if not reader_left(exc):
                raise
            self._gone = True
            reader_gone(self._stream)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _RichLogger:
    """A structlog logger that prints through a rich console, above any live display."""

    def __init__(self, console: Console) -> None:
        """Print on ``console``."""
        from rich.text import Text  # noqa: PLC0415 -- rich loads only for readable logs

        self._console = console
        self._from_ansi = Text.from_ansi

    def msg(self, message: str) -> None:
        """One rendered log line (it may carry the renderer's colours)."""
        # soft_wrap: a long line is left to the terminal to wrap, never cut into two.
        self._console.print(self._from_ansi(message), soft_wrap=True, highlight=False)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def configure_logging(*, fmt: str | None, verbosity: int, stream: TextIO | None = None) -> LogSetup:
    """Send structlog to ``stream`` (stderr): JSON unless ``fmt`` is console or it is a TTY.

    Console lines go through a rich ``Console`` (in the setup returned), so that they print
    above the progress bar drawn on the same console. JSON lines are written as they are: no
    live display shares their stream (the runner logs progress lines instead), and no
    console is made for them.
    """
    global _setup  # noqa: PLW0603 -- structlog's configuration is process-wide as well
    terminal = (stream or sys.stderr).isatty()
    readable = fmt == "console" or (fmt is None and terminal)
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(
            colors=terminal, exception_formatter=structlog.dev.plain_traceback
        )
        if readable
        else structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj).decode()
        )
    )
    console = None
    logger: _RichLogger | _PipeSafeLogger = _PipeSafeLogger(stream or sys.stderr)
    if readable:
        console = output(file=stream) if stream is not None else output(stderr=True)
        logger = _RichLogger(console)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub(readable),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: logger,
        cache_logger_on_first_use=False,
    )
    _bridge_standard_logging(logging.INFO if verbosity >= 2 else logging.WARNING)
    _setup = LogSetup(console=console, readable=readable, verbosity=verbosity, terminal=terminal)
    return _setup


class _ToStructlog(logging.Handler):
    """Records of the standard library's logging (asyncio's, the Temporal SDK's, aiohttp's)
    as bulkkm's own lines: in the same format, through the same scrubbing of secrets.

    Without it they went to Python's last-resort handler: plain text in the middle of JSON
    lines (a log shipper's parse error), and past ``scrub``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        """One record, as a structlog event named after its logger."""
        try:
            fields: dict[str, object] = {"message": record.getMessage()}
            if record.exc_info and record.exc_info[0] is not None:
                fields["exc_info"] = record.exc_info
            structlog.get_logger("bulkkm").log(record.levelno, record.name, **fields)
        except Exception:  # logging must never end the program
            self.handleError(record)


def _bridge_standard_logging(level: int) -> None:
    """Route the standard library's root logger, from ``level`` up, to structlog (once)."""
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _ToStructlog)]
    root.addHandler(_ToStructlog())
    root.setLevel(level)
