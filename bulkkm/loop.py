"""Which event loop a command runs on: uvloop when installed (``bulkkm[fast]``), else asyncio's.

``BULKKM_LOOP=asyncio`` keeps asyncio's own loop even where uvloop is installed;
``BULKKM_LOOP=uvloop`` insists on uvloop (an error where it is not installed).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Callable, Coroutine
from typing import Final, TypeVar

__all__ = ["ENV", "loop_factory", "run"]

T = TypeVar("T")
ENV: Final = "BULKKM_LOOP"


def loop_factory(choice: str | None = None) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop to use (None: asyncio's default), from ``BULKKM_LOOP``."""
    choice = (os.environ.get(ENV, "") if choice is None else choice).strip().lower()
    if choice == "asyncio":
        return None
    if choice not in ("", "uvloop"):
        raise ValueError(f"{ENV}={choice!r}: expected asyncio or uvloop")
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise ValueError(f"{ENV}=uvloop, and uvloop is not installed (bulkkm[fast])") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[object, object, T]) -> T:
    """``asyncio.run`` on the loop ``loop_factory`` picks."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
