"""``ontap.Lanes``: a request waits briefly for a busy connection rather than open another."""

from __future__ import annotations

import asyncio

from bulkkm.ontap import Lanes


def _lanes(connections: int, connect_seconds: float, limit: int = 4) -> Lanes:
    """A cluster's lanes with ``connections`` open, the last of which took ``connect_seconds``."""
    lanes = Lanes(limit)
    lanes.connections, lanes.connect_seconds = connections, connect_seconds
    return lanes


async def test_a_request_takes_the_connection_another_gives_back() -> None:
    """With its one connection busy, the next request waits and is handed it: none opens."""
    lanes = _lanes(connections=1, connect_seconds=10.0)
    await lanes.__aenter__()
    second = asyncio.create_task(lanes.__aenter__())
    await asyncio.sleep(0.01)
    assert not second.done()
    await lanes.__aexit__()
    async with asyncio.timeout(1):
        await second
    assert lanes.busy == 1  # the connection went from the first request to the second
    await lanes.__aexit__()
    assert lanes.busy == 0


async def test_a_request_waits_no_longer_than_opening_took() -> None:
    """No connection comes free within the connect time: the request goes (another opens)."""
    lanes = _lanes(connections=1, connect_seconds=0.01)
    await lanes.__aenter__()
    async with asyncio.timeout(1):
        await lanes.__aenter__()
    assert (lanes.busy, lanes.connections) == (2, 2)


async def test_the_first_request_opens_at_once_and_the_second_waits_for_it() -> None:
    """Nothing open: the first request goes; the second waits for its connection."""
    lanes = _lanes(connections=0, connect_seconds=0.0)
    await lanes.__aenter__()
    second = asyncio.create_task(lanes.__aenter__())
    await asyncio.sleep(0.01)
    assert not second.done()
    await lanes.__aexit__()
    async with asyncio.timeout(1):
        await second
    assert (lanes.busy, lanes.connections) == (1, 1)


async def test_no_request_waits_at_the_limit() -> None:
    """``concurrency`` connections busy: the next request goes (to wait in aiohttp's pool)."""
    lanes = _lanes(connections=4, connect_seconds=10.0)
    async with asyncio.timeout(1):
        for _ in range(5):
            await lanes.__aenter__()
    assert (lanes.busy, lanes.connections) == (5, 4)


async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on() -> None:
    """Cancelled as it was handed a connection: the next waiter gets it; nothing leaks."""
    lanes = _lanes(connections=1, connect_seconds=10.0)
    await lanes.__aenter__()
    first = asyncio.create_task(lanes.__aenter__())
    second = asyncio.create_task(lanes.__aenter__())
    await asyncio.sleep(0.01)
    await lanes.__aexit__()  # hands the connection to ``first`` ...
    first.cancel()  # ... which is cancelled before it runs
    async with asyncio.timeout(1):
        await second
        await asyncio.gather(first, return_exceptions=True)
    assert first.cancelled()
    assert lanes.busy == 1
    await lanes.__aexit__()
    assert lanes.busy == 0
