"""Which clusters may work at once: a budget of open connections, not a fixed pool.

A cluster holds up to its ``concurrency`` connections while it is active, so it is admitted
when that many fit in the run's budget (``--max-connections``) and gives them back when it
is done. Clusters are admitted one at a time in rollout order: one that does not fit yet
waits at the head of the line, and those behind it wait too, so the order holds. A slow
cluster holds only its own connections; a fleet of 10,000 clusters means at most
``budget / concurrency`` clusters (and their tasks and state) at once.
"""

from __future__ import annotations

import asyncio
import os
import resource
from collections.abc import Callable
from typing import Final

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Admission", "default_max_connections"]

DEFAULT_MAX_CONNECTIONS: Final = 2048
"""The budget where the machine allows it: 512 clusters of concurrency 4."""
RESERVED_FILES: Final = 256
"""File descriptors kept for everything else (reports, logs, the loop's own)."""
CONNECTION_BYTES: Final = 160 * 1024
"""What one open TLS connection may cost (OpenSSL's state, buffers), for the memory bound."""
MEMORY_SHARE: Final = 8
"""At most 1/8 of the machine's memory goes to connections."""
MIN_CONNECTIONS: Final = 16


def default_max_connections() -> int:
    """The budget for this machine: 2,048, fewer where file descriptors or memory are short."""
    budget = DEFAULT_MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        budget = min(budget, soft - RESERVED_FILES)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not every platform says
        memory = 0
    if memory > 0:
        budget = min(budget, memory // MEMORY_SHARE // CONNECTION_BYTES)
    return max(budget, MIN_CONNECTIONS)


class Admission:
    """The run's budget of connections, and optionally of clusters, given out in order."""

    __slots__ = ("_changed", "active", "clusters", "connections", "in_use")

    def __init__(self, connections: int, clusters: int | None = None) -> None:
        """A budget of ``connections`` (and at most ``clusters`` active clusters, if given)."""
        if connections < 1 or (clusters is not None and clusters < 1):
            raise ValueError("an admission budget must allow at least one cluster")
        self.connections = connections
        self.clusters = clusters
        self.in_use = 0
        """Connections held by active clusters."""
        self.active = 0
        """Clusters admitted and not done."""
        self._changed = asyncio.Event()

    def cost(self, concurrency: int) -> int:
        """The connections a cluster of ``concurrency`` holds (all of the budget at most)."""
        return min(concurrency, self.connections)

    def fits(self, cost: int) -> bool:
        """Whether a cluster holding ``cost`` connections may start now."""
        if self.clusters is not None and self.active >= self.clusters:
            return False
        return self.in_use + cost <= self.connections

    async def admit(self, cost: int, *, stopped: Callable[[], bool]) -> bool:
        """Wait until ``cost`` connections fit, and hold them; False once ``stopped()`` says so.

        One caller at a time (the run's dispatcher): the order of admission is its order.
        """
        while not self.fits(cost):
            if stopped():
                return False
            self._changed.clear()
            await self._changed.wait()
        if stopped():
            return False
        self.in_use += cost
        self.active += 1
        return True

    def release(self, cost: int) -> None:
        """A cluster is done: its connections go back to the budget."""
        self.in_use -= cost
        self.active -= 1
        self._changed.set()

    def wake(self) -> None:
        """Wake the waiting dispatcher (the run stopped: it need not wait any longer)."""
        self._changed.set()
