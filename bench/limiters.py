"""Rate limiters compared: aiolimiter (what bulkkm uses) against asyncio-throttle.

Mirrors the engine's use of its limiter: many requests wait on one cluster's limiter and
each, once admitted, does its (here trivial) request. ``waiters`` tasks share one limiter
whose rate makes the whole batch take about ``seconds``; what is measured is the CPU time
the waiting costs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable

from aiolimiter import AsyncLimiter
from asyncio_throttle.throttler import Throttler

__all__ = ["LIMITERS", "LimiterRun", "measure_limiter"]

Acquire = Callable[[], Awaitable[object]]


def _aiolimiter(rate: int) -> Acquire:
    """aiolimiter's leaky bucket, built as bulkkm's gate builds it (``rate`` per second)."""
    return AsyncLimiter(rate, 1.0).acquire


def _asyncio_throttle(rate: int) -> Acquire:
    """asyncio-throttle's sliding window (it polls every 10 ms while full)."""
    acquire: Acquire = Throttler(rate_limit=rate, period=1.0).acquire
    return acquire


LIMITERS: dict[str, Callable[[int], Acquire]] = {
    "aiolimiter": _aiolimiter,
    "asyncio-throttle": _asyncio_throttle,
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LimiterRun:
    """One limiter driven by ``waiters`` tasks."""

    limiter: str
    waiters: int
    seconds: float
    cpu_seconds: float

    @property
    def cpu_us_per_acquire(self) -> float:
        """CPU microseconds per admitted request."""
        return self.cpu_seconds / self.waiters * 1e6


async def _drive(acquire: Acquire, waiters: int) -> None:
    """``waiters`` tasks wait their turn, then do their request."""

    async def request() -> None:
        await acquire()
        await asyncio.sleep(0)  # the request itself: not what is measured

    async with asyncio.TaskGroup() as group:
        for _ in range(waiters):
            group.create_task(request())


def measure_limiter(name: str, *, waiters: int, seconds: float) -> LimiterRun:
    """Drive one limiter in a fresh event loop; its wall and CPU time."""
    # Both let a full period's worth through at once, then ``rate`` per second.
    rate = max(1, math.ceil(waiters / (seconds + 1.0)))
    acquire = LIMITERS[name](rate)
    started, cpu = time.perf_counter(), time.process_time()
    asyncio.run(_drive(acquire, waiters))
    return LimiterRun(
        limiter=name,
        waiters=waiters,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu,
    )
