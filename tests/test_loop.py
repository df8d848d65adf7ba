"""The event loop a command runs on: ``BULKKM_LOOP`` and whether uvloop is installed."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from bulkkm import loop

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_asyncio_choice_is_the_default_loop() -> None:
    """``BULKKM_LOOP=asyncio``: no factory, asyncio's own loop."""
    assert loop.loop_factory("asyncio") is None
    assert loop.loop_factory(" AsyncIO ") is None


def test_an_unknown_loop_is_refused() -> None:
    """A name that is neither asyncio nor uvloop is a ValueError naming the variable."""
    with pytest.raises(ValueError, match="BULKKM_LOOP"):
        loop.loop_factory("trio")


@pytest.mark.skipif(HAS_UVLOOP, reason="uvloop is installed")
def test_without_uvloop_auto_is_asyncio_and_insisting_is_an_error() -> None:
    """Not installed: the automatic choice is asyncio's loop; ``uvloop`` is an error."""
    assert loop.loop_factory("") is None
    with pytest.raises(ValueError, match=r"bulkkm\[fast\]"):
        loop.loop_factory("uvloop")


@pytest.mark.skipif(not HAS_UVLOOP, reason="uvloop is not installed")
def test_with_uvloop_auto_and_insisting_run_on_uvloop() -> None:
    """Installed: both the automatic choice and ``uvloop`` give uvloop's loop."""
    for choice in ("", "uvloop"):
        factory = loop.loop_factory(choice)
        assert factory is not None
        made = factory()
        try:
            assert type(made).__module__.startswith("uvloop")
        finally:
            made.close()


def test_run_runs_the_coroutine_on_the_chosen_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """``run`` returns the coroutine's result; with ``asyncio`` on asyncio's own loop."""
    monkeypatch.setenv(loop.ENV, "asyncio")

    async def which() -> str:
        """The running loop's module."""
        return type(asyncio.get_running_loop()).__module__

    assert loop.run(which()).startswith("asyncio")
