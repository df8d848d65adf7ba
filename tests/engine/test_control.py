"""``RunControl``: an interrupt reaches a run from any thread (the service runs each engine
run on a loop of its own, in another thread)."""

from __future__ import annotations

import asyncio
import threading

from bulkkm.engine import RunControl


def test_an_interrupt_from_another_thread_wakes_the_run() -> None:
    """The run waits on its own loop; the interrupt comes from this thread, and wakes it."""
    control = RunControl()
    waiting = threading.Event()
    woken: list[bool] = []

    async def run() -> None:
        control.attach(asyncio.get_running_loop())
        waiting.set()
        async with asyncio.timeout(60):
            await control.interrupted.wait()
        woken.append(True)

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    assert waiting.wait(10)
    control.interrupt()
    # Set from this thread without waking that loop, the run would sleep on to its timeout.
    thread.join(5)
    assert woken == [True]


async def test_an_interrupt_on_the_run_s_own_loop_is_immediate() -> None:
    """On the run's own loop (the CLI's signal handler) the event is set at once."""
    control = RunControl()
    control.attach(asyncio.get_running_loop())
    control.interrupt()
    assert control.interrupted.is_set()


def test_an_interrupt_after_the_run_s_loop_closed_is_harmless() -> None:
    """A run over, its loop closed: an interrupt raises nothing."""
    control = RunControl()

    async def run() -> None:
        control.attach(asyncio.get_running_loop())

    asyncio.run(run())
    control.interrupt()  # no loop to hand it to: nothing happens, nothing raises
