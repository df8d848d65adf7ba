"""Which clusters may work at once: budgets of connections and targets, not a fixed pool.

A cluster holds up to its ``concurrency`` connections while it is active, so it is admitted
when that many fit in the run's budget (``--max-connections``) and its targets fit in a
budget of targets at once (memory); it gives both back when it is done. Clusters are
admitted one at a time in rollout order: one that does not fit yet waits at the head of
the line, and those behind it wait too, so the order holds. A slow cluster holds only its
own share; a fleet of 10,000 clusters means at most ``budget / concurrency`` clusters (and
their tasks and state) at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import resource
from collections.abc import Callable
from typing import Final

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_TARGETS",
    "Admission",
    "Ticket",
    "default_max_connections",
]

DEFAULT_MAX_CONNECTIONS: Final = 4096
"""The budget where the machine allows it: 1,024 clusters of concurrency 4 (where ONTAP
answers a key-server write in seconds, the clusters in flight set the pace)."""
RESERVED_FILES: Final = 256
"""File descriptors kept for everything else (reports, logs, the loop's own)."""
CONNECTION_BYTES: Final = 160 * 1024
"""What one open TLS connection may cost (OpenSSL's state, buffers), for the memory bound."""
MEMORY_SHARE: Final = 8
"""At most 1/8 of the machine's memory goes to connections."""
MIN_CONNECTIONS: Final = 16
DEFAULT_MAX_TARGETS: Final = 16_000
"""Targets of active clusters at once: each holds its plan and outcome until its cluster is
done (a few KiB), so this bounds memory where clusters are large (100 SVMs and more)."""
PRIOR_TARGETS: Final = 100.0
"""What a cluster is expected to hold before any has been discovered."""


def default_max_connections() -> int:
    """The budget for this machine: 4,096, fewer where file descriptors or memory are short.

    A soft limit on open files below what the budget needs (1,024 is a common default) is
    raised first, as far as the hard limit allows.
    """
    budget = DEFAULT_MAX_CONNECTIONS
    soft = _raise_open_files(budget + RESERVED_FILES)
    if soft != resource.RLIM_INFINITY:
        budget = min(budget, soft - RESERVED_FILES)
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):  # not every platform says
        memory = 0
    if memory > 0:
        budget = min(budget, memory // MEMORY_SHARE // CONNECTION_BYTES)
    return max(budget, MIN_CONNECTIONS)


def _raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files to ``wanted`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    except (ValueError, OSError):
        return soft
    return raised


@dataclasses.dataclass(slots=True)
class Ticket:
    """What one admitted cluster holds: its connections, and its targets (estimated until
    its discovery says)."""

    connections: int
    targets: float
    discovered: bool = False


class Admission:
    """The run's budgets, given out to clusters one at a time, in order.

    Connections: a cluster holds ``min(concurrency, budget)`` of them while active.
    Targets (memory: each target's plan and outcome is kept until the cluster is done): a
    cluster counts its targets once discovered, before that the mean of those discovered
    so far (``PRIOR_TARGETS`` before any is), so a fleet of large clusters is let in
    gradually and one of small clusters fills the connection budget.
    """

    __slots__ = (
        "_changed",
        "_seen",
        "_seen_targets",
        "active",
        "clusters",
        "connections",
        "in_use",
        "targets",
        "targets_held",
    )

    def __init__(
        self, connections: int, *, clusters: int | None = None, targets: int | None = None
    ) -> None:
        """Budgets of ``connections``, and of ``clusters`` and ``targets`` at once if given."""
        if connections < 1 or (clusters is not None and clusters < 1):
            raise ValueError("an admission budget must allow at least one cluster")
        self.connections = connections
        self.clusters = clusters
        self.targets = targets
        self.in_use = 0
        """Connections held by active clusters."""
        self.active = 0
        """Clusters admitted and not done."""
        self.targets_held = 0.0
        """Targets of active clusters (estimated for those not discovered yet)."""
        self._seen = 0
        self._seen_targets = 0
        self._changed = asyncio.Event()

    def cost(self, concurrency: int) -> int:
        """The connections a cluster of ``concurrency`` holds (all of the budget at most)."""
        return min(concurrency, self.connections)

    def estimate(self) -> float:
        """The targets a cluster not discovered yet is expected to have."""
        return self._seen_targets / self._seen if self._seen else PRIOR_TARGETS

    def fits(self, cost: int) -> bool:
        """Whether a cluster holding ``cost`` connections may start now (the first always may)."""
        if not self.active:
            return True
        if self.clusters is not None and self.active >= self.clusters:
            return False
        if self.targets is not None and self.targets_held + self.estimate() > self.targets:
            return False
        return self.in_use + cost <= self.connections

    async def admit(self, concurrency: int, *, stopped: Callable[[], bool]) -> Ticket | None:
        """Wait until a cluster of ``concurrency`` fits, and hold its share; None once stopped.

        One caller at a time (the run's dispatcher): the order of admission is its order.
        """
        cost = self.cost(concurrency)
        while not self.fits(cost):
            if stopped():
                return None
            self._changed.clear()
            await self._changed.wait()
        if stopped():
            return None
        ticket = Ticket(connections=cost, targets=self.estimate())
        self.in_use += cost
        self.active += 1
        self.targets_held += ticket.targets
        return ticket

    def discovered(self, ticket: Ticket, targets: int) -> None:
        """An admitted cluster knows its targets: they replace its estimate."""
        if ticket.discovered:
            return
        ticket.discovered = True
        self._seen += 1
        self._seen_targets += targets
        self.targets_held += targets - ticket.targets
        ticket.targets = targets
        self._changed.set()

    def release(self, ticket: Ticket) -> None:
        """A cluster is done: its connections and targets go back to the budget."""
        self.in_use -= ticket.connections
        self.active -= 1
        self.targets_held -= ticket.targets
        self._changed.set()

    def wake(self) -> None:
        """Wake the waiting dispatcher (the run stopped: it need not wait any longer)."""
        self._changed.set()
