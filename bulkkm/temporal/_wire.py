"""What crosses Temporal: small frozen values, plain types only (no secret, no live object).

The workflow's sandbox imports this module, so it imports nothing of bulkkm's.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = [
    "ACTIVITY",
    "CLAIM",
    "PROCEED",
    "SIDE",
    "SIDE_PART",
    "WORKFLOW",
    "WORKFLOW_QUEUE",
    "Answer",
    "ClusterDone",
    "ClusterJob",
    "ClusterTask",
    "Progress",
    "RolloutInput",
    "task_queue",
    "workflow_id",
]

ACTIVITY: Final = "bulkkm-cluster"
CLAIM: Final = "claim"
"""The workflow's update: cluster uuids by inventory name -> the names claimed first by others."""
SIDE: Final = "side"
"""The workflow's signal: a part of the per-cluster data (a saved plan's approvals)."""
PROCEED: Final = "proceed"
"""The workflow's signal: the operator's answer after a wave (``--confirm-waves``)."""
SIDE_PART: Final = 1_000_000
"""Characters of per-cluster data per signal: well under Temporal's 2 MB per payload."""
WORKFLOW: Final = "bulkkm-rollout"
WORKFLOW_QUEUE: Final = "bulkkm-rollout"
"""Every regional worker also runs rollout workflows (they hold no secret, send no request)."""
PAGE: Final = 200
"""Clusters per progress query: a page stays far under gRPC's 4 MiB."""


def task_queue(region: str) -> str:
    """The task queue of a region's workers."""
    return f"bulkkm-{region}"


def workflow_id(run_id: str) -> str:
    """The rollout workflow of a run."""
    return f"bulkkm-run-{run_id}"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterJob:
    """One cluster to work: where, and in which wave (None without ``--waves``)."""

    name: str
    region: str
    wave: int | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RolloutInput:
    """A rollout: the run request, and the clusters already cut into waves by the coordinator."""

    run_id: str
    request_json: str
    """``RunRequest.to_json`` as text: paths and options, never a secret."""
    inventory_sha256: str
    """Workers refuse a cluster when their own inventory differs."""
    waves: list[list[ClusterJob]]
    rolling: bool
    """Whether ``--waves`` is on (each wave's failure percentage can stop the rollout)."""
    max_failures: int | None = None
    max_fail_percent: float | None = None
    pause_between_waves: float = 0.0
    parallel: int = 64
    """Clusters in flight at once, across regions (the in-process engine's pool)."""
    heartbeat_timeout: float = 30.0
    """A worker silent this long is taken for dead: its cluster goes to another worker."""
    side_parts: int = 0
    """Signals of per-cluster data (``SIDE``) to wait for before the first wave."""
    confirm_waves: bool = False
    """Wait for the operator's answer (``PROCEED``) after each wave but the last."""
    plan_id: str | None = None
    """The saved plan this rollout executes (its approvals come as ``SIDE`` parts)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterTask:
    """One activity's input: the cluster, and what its run needs (no secret)."""

    run_id: str
    request_json: str
    inventory_sha256: str
    cluster: str
    region: str
    wave: int | None = None
    plan_id: str | None = None
    approved: str | None = None
    """With ``--plan``: the cluster's approved key managers (JSON), the only ones changed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The operator's word after wave ``wave``: go on, or stop the rollout."""

    wave: int
    go: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterDone:
    """A cluster's end: its report events (codec JSON, as one text), or why it never started."""

    name: str
    wave: int | None = None
    events_json: str = "[]"
    targets: int = 0
    failures: int = 0
    skipped: str | None = None
    """The reason the cluster was not started (``max_failures``, ``rollout_stopped`` …)."""
    error: str | None = None
    """Why the activity itself failed (a worker's inventory differs, retries ran out)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A page of clusters done, from ``start``; ``finished`` once the rollout is over."""

    done: list[ClusterDone]
    total: int
    finished: bool
    stop: str | None = None
    waves: int = 0
    asking: int | None = None
    """The wave just finished whose go-ahead the rollout waits for (``--confirm-waves``);
    given only on the page that reaches the last cluster done."""
