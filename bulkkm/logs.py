"""Logging setup: structlog to stderr, JSON lines or a readable console, secrets scrubbed.

Every event passes ``scrub`` last before rendering: values under secret-looking keys are
masked, every known secret value is replaced wherever it appears, and (for the console)
control characters from server-supplied names cannot drive the terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Final, TextIO

import orjson
import structlog

from bulkkm.secret import redact

__all__ = ["configure_logging", "printable", "scrub"]

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


def configure_logging(*, fmt: str | None, verbosity: int, stream: TextIO | None = None) -> None:
    """Send structlog to ``stream`` (stderr): JSON unless ``fmt`` is console or it is a TTY."""
    stream = stream or sys.stderr
    console = fmt == "console" or (fmt is None and stream.isatty())
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        if console
        else structlog.processors.JSONRenderer(
            serializer=lambda obj, **_: orjson.dumps(obj).decode()
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub(console),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
