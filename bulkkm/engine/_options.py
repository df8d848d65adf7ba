"""How one run behaves: the command, its limits and stops, what it resumes or executes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum

from bulkkm.engine._admission import DEFAULT_MAX_TARGETS
from bulkkm.events import WaveFinished
from bulkkm.plan import ApprovedKeyManager, ApprovedPlan
from bulkkm.resume import Resume
from bulkkm.retry import RetryPolicy
from bulkkm.rollout import WaveSize

__all__ = ["ApprovedKeyManager", "ApprovedPlan", "Command", "Options", "Resume", "RunControl"]


class Command(StrEnum):
    """What a run is for."""

    PLAN = "plan"
    CHECK = "check"
    APPLY = "apply"
    MIGRATE = "migrate"
    """Add the desired servers, verify them, then remove the retired ones."""

    @property
    def writes(self) -> bool:
        """Whether the command changes clusters (the others only read)."""
        return self in (Command.APPLY, Command.MIGRATE)

    @property
    def retires(self) -> bool:
        """Whether retired servers are targets (``migrate`` removes them, ``check`` audits
        them, ``plan`` shows what ``migrate`` would do)."""
        return self in (Command.MIGRATE, Command.CHECK, Command.PLAN)


def _utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How one run behaves."""

    command: Command = Command.APPLY
    dry_run: bool = False
    max_failures: int | None = None
    max_fail_percent: float | None = None
    """Over the run; with waves, over each wave (default 0 then: any failure stops)."""
    resume: Resume | None = None
    approved: ApprovedPlan | None = None
    waves: tuple[WaveSize, ...] | None = None
    wave_order: str = "inventory"
    pause_between_waves: float = 0.0
    confirm_wave: Callable[[WaveFinished], Awaitable[bool]] | None = None
    """Asked after each wave but the last; False stops the rollout."""
    ignore_windows: bool = False
    clock: Callable[[], datetime] = _utcnow
    retry: RetryPolicy = RetryPolicy()
    max_connections: int | None = None
    """The connections open at once (``--max-connections``; None: sized for the machine,
    4,096 where it allows). A cluster holds its ``concurrency`` of them while active, so
    this sets how many clusters progress at once; the rest wait their turn, in rollout
    order."""
    active_clusters: int | None = None
    """At most this many clusters at once, whatever the connections allow (None: no cap)."""
    max_targets: int | None = DEFAULT_MAX_TARGETS
    """Targets of active clusters at once (memory: each is held until its cluster is done);
    a cluster not discovered yet counts as the mean so far. None: no such budget."""
    breaker_threshold: int = 10
    """Transport failures in a row after which a cluster's remaining targets are skipped."""
    verify_timeout: float = 300.0
    """``migrate``: seconds a key manager's new servers have to become reachable from every
    node before its removals are given up (``replacement_unreachable``)."""
    verify_keys: bool = False
    """``migrate``: also restore the keys from a new server and require every key
    ``restored`` on every node (ONTAP 9.13+), before anything is removed."""
    grace: float = 5.0
    """Seconds in-flight requests get to finish after an interrupt."""
    skipped_clusters: tuple[str, ...] = ()
    """Clusters of the inventory left out of this run (``--limit``): one ``skipped`` line each."""
    flags: tuple[str, ...] = ()
    """The command-line options that shape the run (``RunRequest.flags``), for its run line:
    the command that finishes the run repeats them."""

    @property
    def read_only(self) -> bool:
        """Whether nothing but GET may leave the process."""
        return self.dry_run or not self.command.writes

    @property
    def windows(self) -> bool:
        """Whether maintenance windows restrict this run (only writes are held to them)."""
        return self.command.writes and not self.ignore_windows


class RunControl:
    """Stops a run from outside it: the CLI's signal handlers call ``interrupt``, the
    service (whose engine runs on a loop of its own, in another thread) too."""

    def __init__(self) -> None:
        """Not stopped."""
        self.interrupted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The run works on ``loop``: an interrupt from another thread is handed to it."""
        self._loop = loop

    def interrupt(self) -> None:
        """Start no new work; in-flight requests get the grace period, then are cancelled.

        From any thread: off the run's own loop, the interrupt is passed to it.
        """
        loop = self._loop
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or loop is here:
            self.interrupted.set()
        else:
            with contextlib.suppress(RuntimeError):  # its loop has closed: the run is over
                loop.call_soon_threadsafe(self.interrupted.set)
