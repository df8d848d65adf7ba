"""What a run tells its front ends: outcomes and progress, as frozen events.

The engine never prints. It hands every event to its subscribers (the report writer, the
log, the progress bar, a future web service), in the order things happen.

Every event is a plain frozen value (strings, numbers, enums, datetimes, tuples, ``dict[str,
int]`` and other frozen values: nothing live, no secret) that ``bulkkm.codec`` turns into JSON
and back. Every event carries its run's id, a sequence number and the time it was emitted
(``Stamp``'s fields). Emit sites leave them out: the run's fan-out (``bulkkm.fanout``) stamps
each event as it is emitted, so an event made but not yet emitted has ``seq`` 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from bulkkm.errors import ErrorCategory, OntapError
from bulkkm.plan import Decision, Operation
from bulkkm.state import LiveKeyManager

__all__ = [
    "CHANGES",
    "NOT_EMITTED",
    "AsyncSubscriber",
    "ClusterDiscovered",
    "ClusterResult",
    "ErrorInfo",
    "Event",
    "Outcome",
    "Retrying",
    "RunFinished",
    "RunStarted",
    "Stamp",
    "Subscriber",
    "SyncSubscriber",
    "TargetKey",
    "TargetResult",
    "TargetsKnown",
    "TemporalRun",
    "Verified",
    "WaveFinished",
    "WaveStarted",
]


TargetKey = tuple[str, str | None, str]
"""A target's identity across runs: (cluster, svm or None for the cluster scope, server)."""


NOT_EMITTED: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The ``at`` of an event not emitted yet."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Stamp:
    """What every event carries: the run, its place in the run's stream, when it was emitted.

    Set by the fan-out at emit (``dataclasses.replace``), never by the code that makes the event.
    """

    run_id: str = ""
    seq: int = 0
    """1, 2, 3 … in the order the run emitted its events; 0 until emitted."""
    at: datetime = NOT_EMITTED


class Outcome(StrEnum):
    """How one target ended (the report's ``outcome``)."""

    ADDED = "added"
    PRESENT = "present"
    WOULD_ADD = "would_add"
    BLOCKED = "blocked"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    REMOVED = "removed"
    """``migrate``: this run removed a retired server (ONTAP answered 200, or a read-back)."""
    ABSENT = "absent"
    """``migrate``: the retired server was already gone."""
    WOULD_REMOVE = "would_remove"
    """``plan``, ``check``, ``--dry-run``: a retired server still there."""


CHANGES: Final = frozenset({Outcome.ADDED, Outcome.REMOVED})
"""The outcomes of a target whose cluster this run changed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """The report's ``error`` object."""

    category: ErrorCategory
    message: str
    code: str | None = None
    http_status: int | None = None

    @classmethod
    def from_exception(cls, exc: OntapError) -> ErrorInfo:
        """The error a failed exchange leaves in the report."""
        return cls(
            category=exc.category, message=exc.message, code=exc.code, http_status=exc.http_status
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TemporalRun:
    """Where a ``--temporal`` run went: its server, namespace and rollout workflow.

    Recorded so that the run can be continued the way it ran (``--temporal``, ``--attach``).
    """

    address: str
    """``HOST:PORT`` of the Temporal server."""
    namespace: str
    workflow_id: str


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Stamp):
    """The run's identity: the report's ``run`` line."""

    command: str
    dry_run: bool
    started_at: datetime
    inventory: str
    inventory_sha256: str
    version: str
    resumed_from: str | None
    clusters: int
    waves: tuple[str, ...] | None = None
    """The wave sizes when rolling out in waves (``("1", "10%", "100%")``)."""
    ignore_windows: bool = False
    plan_id: str | None = None
    """The approved plan this run executes."""
    temporal: TemporalRun | None = None
    """``--temporal``: the server and workflow the run goes through (None: in-process)."""
    options: tuple[str, ...] = ()
    """The options that shape the run, as flags (``--plan P --waves 1,10%``): the command
    that finishes the run repeats them."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterDiscovered(Stamp):
    """A cluster's live state was read and its targets planned."""

    cluster: str
    version: str
    targets: int
    key_managers: tuple[LiveKeyManager, ...] = ()
    decisions: tuple[Decision, ...] = ()

    def __post_init__(self) -> None:
        """Hold no secret: a decision's KMIP password stays with the engine's own copy."""
        if any(d.desired.password is not None for d in self.decisions):
            plain = tuple(
                dataclasses.replace(d, desired=dataclasses.replace(d.desired, password=None))
                for d in self.decisions
            )
            object.__setattr__(self, "decisions", plain)  # frozen: set once, while being made


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TargetsKnown(Stamp):
    """Every cluster has been discovered (or given up on): the run's target count is final."""

    targets: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Retrying(Stamp):
    """A request failed transiently and will be tried again after ``wait`` seconds."""

    cluster: str
    svm: str | None
    servers: tuple[str, ...]
    attempt: int
    wait: float
    error: ErrorInfo


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TargetResult(Stamp):
    """One target's final outcome: the report's ``target`` line."""

    cluster: str
    svm: str | None
    key_manager_uuid: str | None
    server: str
    outcome: Outcome
    error: ErrorInfo | None = None
    reason: str | None = None
    """Why a target was blocked, skipped or cancelled: a short token (``max_failures`` …)."""
    attempts: int = 0
    started_at: datetime
    finished_at: datetime
    carried_over: bool = False
    """True when the outcome comes from the report a ``--resume`` run started from."""
    wave: int | None = None
    action: Operation | None = None
    """``migrate``: whether the target adds or removes its server (None: ``apply``, adds)."""

    @property
    def duration_ms(self) -> int:
        """Milliseconds from the first attempt to the outcome."""
        return round((self.finished_at - self.started_at).total_seconds() * 1000)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Verified(Stamp):
    """A key manager's verification ended: the report's ``verify`` line.

    ``servers``: server -> node -> state (``available``, ``not_responding``, ``unknown``;
    before ONTAP 9.13, which names no node, the node is ``cluster``).
    """

    cluster: str
    svm: str | None
    key_manager_uuid: str
    servers: dict[str, dict[str, str]]
    passed: bool
    duration_ms: int
    reason: str | None = None
    """Why it failed: ``replacement_unreachable``, ``verify_timeout``, ``keys_not_restored``;
    or, stopped before its end, the stop's reason (``interrupted``, ``max_failures`` …)."""
    wave: int | None = None
    stopped: Outcome | None = None
    """Set when the run stopped the verification before its end: how the stop ends work, as
    it ends targets (``cancelled`` when interrupted, ``skipped`` for a threshold or a window),
    so that an unfinished verification is not counted ``failed``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterResult(Stamp):
    """A cluster whose targets could not be known: the report's ``cluster`` line."""

    cluster: str
    outcome: Outcome
    error: ErrorInfo | None = None
    reason: str | None = None
    wave: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WaveStarted(Stamp):
    """A rollout wave begins."""

    number: int
    of: int
    clusters: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WaveFinished(Stamp):
    """A rollout wave is over; ``stop`` says why the rollout ends here, if it does."""

    number: int
    of: int
    clusters: tuple[str, ...]
    targets: int
    failed: int
    """Failed targets plus clusters that could not be discovered."""
    counts: dict[str, int]
    stop: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Stamp):
    """The run is over: the report's ``summary`` line."""

    finished_at: datetime
    duration_ms: int
    counts: dict[str, int]
    clusters_failed: int
    exit_code: int
    aborted: bool
    stop_reason: str | None = None
    stop_detail: str | None = None
    """What went wrong when the run stopped because its report could not be written."""


Event = (
    RunStarted
    | WaveStarted
    | WaveFinished
    | ClusterDiscovered
    | TargetsKnown
    | Retrying
    | TargetResult
    | Verified
    | ClusterResult
    | RunFinished
)
SyncSubscriber = Callable[[Event], None]
"""Called with each event, in the run's task: it must be quick and must not block."""
AsyncSubscriber = Callable[[Event], Awaitable[None]]
"""Awaited with each event in a task of its own, fed through a bounded queue."""
Subscriber = SyncSubscriber | AsyncSubscriber
