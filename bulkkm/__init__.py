"""bulkkm."""

from __future__ import annotations

import sys

# structlog's optional traceback renderers, which it imports at once wherever they are
# installed; bulkkm formats exceptions with structlog's ``plain_traceback`` instead.
_UNUSED_BY_STRUCTLOG = ("rich", "better_exceptions")


def _structlog_without_rich() -> None:
    """Import structlog as if rich were not installed, unless something already loaded either.

    rich alone costs about 0.1 s of every start (before the first request of a run). bulkkm
    imports it where it draws with it (the progress display, the console log format, the
    closing summary), and it works there as usual: only structlog's own reference is empty.
    """
    if "structlog" in sys.modules or any(name in sys.modules for name in _UNUSED_BY_STRUCTLOG):
        return
    for name in _UNUSED_BY_STRUCTLOG:
        sys.modules[name] = None  # type: ignore[assignment]  # `import` raises ImportError
    try:
        import structlog  # noqa: F401, PLC0415 -- imported here, with those hidden from it
    finally:
        for name in _UNUSED_BY_STRUCTLOG:
            del sys.modules[name]


_structlog_without_rich()
