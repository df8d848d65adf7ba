"""A cluster's gate, driven without a network: concurrency, release, the rate's place."""

from __future__ import annotations

import asyncio

import pytest

from bulkkm.engine._gate import Gate
from bulkkm.inventory import Limits


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_no_more_requests_than_the_concurrency_pass() -> None:
    """Five requests at a gate of two: two pass, the rest wait until one leaves."""
    gate = Gate(Limits(concurrency=2))
    release = asyncio.Event()
    inside: list[int] = []

    async def request(n: int) -> None:
        async with gate():
            inside.append(n)
            await release.wait()

    async with asyncio.timeout(5), asyncio.TaskGroup() as group:
        for n in range(5):
            group.create_task(request(n))
        await settle()
        assert inside == [0, 1]
        release.set()
    assert sorted(inside) == [0, 1, 2, 3, 4]


async def test_a_failed_request_gives_its_slot_back() -> None:
    """A request that raises inside the gate frees its slot for the next."""
    gate = Gate(Limits(concurrency=1))
    with pytest.raises(RuntimeError):
        async with gate():
            raise RuntimeError("the request failed")
    async with asyncio.timeout(5), gate():
        pass


async def test_the_rate_holds_back_a_request_a_free_slot_would_admit() -> None:
    """At one request a second, the second request waits though slots are free."""
    gate = Gate(Limits(concurrency=4, rate=1.0))
    async with asyncio.timeout(5), gate():  # the bucket's one token
        pass
    reached = asyncio.Event()

    async def request() -> None:
        async with gate():
            reached.set()

    second = asyncio.create_task(request())
    await settle()
    assert not reached.is_set()
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)


async def test_without_a_rate_the_gate_is_the_bare_semaphore() -> None:
    """No rate: every call hands out the same semaphore (nothing built per request)."""
    gate = Gate(Limits(concurrency=3))
    assert gate() is gate()
    assert isinstance(gate(), asyncio.Semaphore)
