"""A cluster's gate: what one request passes to be sent (its semaphore, then its rate).

Held for one request only, never across a backoff sleep: a request waiting to retry must not
keep another from the cluster. Concurrency is a semaphore per cluster rather than aiohttp's
``limit_per_host``, which counts pooled connections per host and port; a rate is a leaky
bucket (aiolimiter), not a semaphore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

from aiolimiter import AsyncLimiter

from bulkkm.inventory import Limits

__all__ = ["Gate"]


class Gate:
    """A cluster's admission for one request: its semaphore, then its rate limiter."""

    __slots__ = ("_limiter", "_semaphore")

    def __init__(self, limits: Limits) -> None:
        """Sized from the cluster's limits (``rate`` None: no rate limit)."""
        self._semaphore = asyncio.Semaphore(limits.concurrency)
        rate = limits.rate
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None

    def __call__(self) -> AbstractAsyncContextManager[None]:
        """A slot for the length of one request (the bare semaphore when there is no rate)."""
        return self._semaphore if self._limiter is None else self._limited()

    @contextlib.asynccontextmanager
    async def _limited(self) -> AsyncIterator[None]:
        """The semaphore, then the rate limiter."""
        async with self._semaphore:
            assert self._limiter is not None
            await self._limiter.acquire()
            yield
