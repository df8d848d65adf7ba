"""A service run as data: its states, its phases and the record the database keeps.

States and how a run moves between them (an apply or a migrate plans first; a ``plan``,
a ``check`` or a ``--dry-run`` runs at once)::

    queued ──> planning ──> awaiting_approval ──approve──> queued ──> running ──> succeeded
      │           │               │     │                    │           ├──────> failed
      │           │            discard expire                │           ├──────> stopped
      │           │               v     v                    │           ├──────> cancelled
      │           │          discarded expired               │           └──────> interrupted
      └──cancel───┴──────────────────────────────────────────┴─> cancelled

A run is ``queued`` while a cluster it needs is held by another active run (``planning`` or
``running``); ``interrupted`` when the service stopped, or was killed, while it ran.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Final

__all__ = [
    "ACTIVE",
    "RETRYABLE",
    "TERMINAL",
    "Phase",
    "RunRecord",
    "RunState",
    "ScheduleFire",
    "ScheduleRecord",
]


class RunState(StrEnum):
    """Where a run is (the contract's list, in its order)."""

    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    DISCARDED = "discarded"
    EXPIRED = "expired"
    INTERRUPTED = "interrupted"


ACTIVE: Final = frozenset({RunState.PLANNING, RunState.RUNNING})
"""States in which a run holds its clusters (an engine works on them)."""
TERMINAL: Final = frozenset(
    {
        RunState.SUCCEEDED,
        RunState.FAILED,
        RunState.STOPPED,
        RunState.CANCELLED,
        RunState.DISCARDED,
        RunState.EXPIRED,
        RunState.INTERRUPTED,
    }
)
RETRYABLE: Final = frozenset(
    {RunState.FAILED, RunState.STOPPED, RunState.CANCELLED, RunState.INTERRUPTED}
)
"""Ended with something left to do: ``retry`` makes a new run for it."""


class Phase(StrEnum):
    """Which engine run a service run does next (or does now)."""

    PLAN = "plan"
    """An apply or migrate: discover and write the plan to approve."""
    EXECUTE = "execute"
    """The command itself (an apply or migrate: exactly the approved plan)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """One run as the database keeps it."""

    id: str
    command: str
    inventory: str
    """The inventory's file name in the inventories folder."""
    options: Mapping[str, object]
    """The run's options as the client gave them (JSON values; checked at creation)."""
    state: RunState
    phase: Phase
    clusters: tuple[tuple[str, str], ...]
    """(name, address) of every cluster the run may contact."""
    locks: tuple[str, ...]
    """Cluster addresses the run holds while active: no other run works on them meanwhile."""
    created_by: str
    created_at: datetime
    updated_at: datetime
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    plan_hash: str | None = None
    """sha256 of the plan file's bytes."""
    plan_expires_at: datetime | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    approval_comment: str | None = None
    ended_by: str | None = None
    """Who cancelled or discarded the run."""
    retry_of: str | None = None
    resume: str | None = None
    """The report this run resumes from (a retry's)."""
    exit_code: int | None = None
    counts: Mapping[str, int] = dataclasses.field(default_factory=dict)
    clusters_failed: int = 0
    error: str | None = None
    """Why the run failed without a report to say it, or a note (``nothing to add``)."""
    auto_approve: bool = False
    """Approve the run's own plan once made (a schedule's ``auto_approve``)."""

    @property
    def needs_approval(self) -> bool:
        """Whether the run writes, so plans first and waits for an approval."""
        return self.command in ("apply", "migrate") and not self.options.get("dry_run", False)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleRecord:
    """A schedule: a command on an inventory at the times a cron expression names, in a zone."""

    id: str
    inventory: str
    command: str
    """``check``, ``apply`` or ``migrate``."""
    cron: str
    """Five fields: minute, hour, day of month, month, day of week."""
    tz: str
    """An IANA zone (``Europe/Paris``): fire times follow its clock, DST included."""
    auto_approve: bool
    """An apply or migrate executes its own plan without waiting for an approval."""
    created_by: str
    created_at: datetime
    next_fire_at: datetime
    """The next fire time not yet handled (UTC)."""
    last_fire_at: datetime | None = None
    last_run_id: str | None = None
    missed_fires: int = 0
    """Fire times that passed while the service was down (or too busy); each run once, late."""
    last_missed_at: datetime | None = None
    last_error: str | None = None
    """Why the last fire made no run (its inventory gone or invalid, ...)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleFire:
    """One fire of a schedule, as recorded."""

    schedule_id: str
    fire_at: datetime
    """The fire time the cron expression named (the latest, when several were missed)."""
    fired_at: datetime
    """When the service handled it."""
    missed: bool
    """Handled late: the service was down (or busy) at ``fire_at``."""
    run_id: str | None
    error: str | None
