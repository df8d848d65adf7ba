"""What crosses Temporal: small frozen values, plain types only (no secret, no live object).

The workflow's sandbox imports this module, so it imports nothing of bulkkm's (orjson and
zlib only, to pack results).
"""

from __future__ import annotations

import base64
import dataclasses
import zlib
from typing import Final

import orjson

__all__ = [
    "ACTIVITY",
    "BEGIN",
    "CHUNK",
    "CLAIM",
    "HALT",
    "PAGE_CHARS",
    "PROCEED",
    "SIDE",
    "SIDE_PART",
    "WORKFLOW",
    "WORKFLOW_QUEUE",
    "Answer",
    "ChunkDone",
    "ChunkTask",
    "ClusterJob",
    "Progress",
    "RolloutInput",
    "chunk_key",
    "pack",
    "pack_waves",
    "task_queue",
    "unpack",
    "unpack_waves",
    "workflow_id",
]

ACTIVITY: Final = "bulkkm-clusters"
"""One activity works a chunk of a region's clusters of one wave."""
BEGIN: Final = "begin"
"""The workflow's update: may this chunk begin (no once the rollout stopped)?"""
CLAIM: Final = "claim"
"""The workflow's update: cluster uuids by inventory name -> the names claimed first by others."""
SIDE: Final = "side"
"""The workflow's signal: a part of the per-cluster data (a saved plan's approvals)."""
HALT: Final = "halt"
"""The workflow's signal: start no new cluster (the coordinator was interrupted)."""
PROCEED: Final = "proceed"
"""The workflow's signal: the operator's answer after a wave (``--confirm-waves``)."""
SIDE_PART: Final = 1_000_000
"""Characters of per-cluster data per signal: well under Temporal's 2 MB per payload."""
WORKFLOW: Final = "bulkkm-rollout"
WORKFLOW_QUEUE: Final = "bulkkm-rollout"
"""Every regional worker also runs rollout workflows (they hold no secret, send no request)."""
CHUNK: Final = 25
"""Clusters per activity at most. History grows by about eight events per activity and
Temporal refuses a workflow past 51,200 events (and 50 MB): one activity per cluster would
not fit 10,000 clusters; one per 25 took 3,549 at 10,000 x 20. Small waves are cut finer, so
that a region's clusters still run side by side."""
PAGE_CHARS: Final = 1_000_000
"""Characters of results per progress query: a page stays far under gRPC's 4 MiB."""


def pack(items: list[object]) -> str:
    """JSON-able items as compressed text (report events compress about 7 to 1)."""
    return base64.b64encode(zlib.compress(orjson.dumps(items), 6)).decode()


def unpack(text: str) -> list[dict[str, object]]:
    """``pack`` of JSON objects undone."""
    items = orjson.loads(zlib.decompress(base64.b64decode(text)))
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise TypeError("packed items are not a list of objects")
    return items


def pack_waves(waves: list[list[ClusterJob]]) -> str:
    """The waves' clusters as one compressed text (``unpack_waves`` reads it back)."""
    return pack([[[j.name, j.region, j.wave] for j in wave] for wave in waves])


def unpack_waves(text: str) -> list[list[ClusterJob]]:
    """``pack_waves`` undone."""
    rows = orjson.loads(zlib.decompress(base64.b64decode(text)))
    return [
        [ClusterJob(name=str(name), region=str(region), wave=wave) for name, region, wave in wave]
        for wave in rows
    ]


def chunk_key(jobs: list[ClusterJob]) -> str:
    """A chunk's name in its run (a cluster is in one chunk of a run: its first one's)."""
    return jobs[0].name


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
    jobs: str
    """The clusters cut into waves, ``pack_waves``ed: one text, not 10,000 values the
    workflow's converter would type-check one by one (seconds: a deadlock to Temporal)."""
    rolling: bool
    """Whether ``--waves`` is on (each wave's failure percentage can stop the rollout)."""
    max_failures: int | None = None
    max_fail_percent: float | None = None
    pause_between_waves: float = 0.0
    parallel: int = 512
    """Clusters in flight at once, across regions (what the in-process engine's former
    default budget let progress at once, 2,048 connections / 4; its default is 4,096 now)."""
    chunk: int = CHUNK
    heartbeat_timeout: float = 30.0
    """A worker silent this long is taken for dead: its cluster goes to another worker."""
    side_parts: int = 0
    """Signals of per-cluster data (``SIDE``) to wait for before the first wave."""
    confirm_waves: bool = False
    """Wait for the operator's answer (``PROCEED``) after each wave but the last."""
    plan_id: str | None = None
    """The saved plan this rollout executes (its approvals come as ``SIDE`` parts)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChunkTask:
    """One activity's input: clusters of one region and wave, and what the run needs (no secret)."""

    run_id: str
    request_json: str
    inventory_sha256: str
    region: str
    clusters: list[str]
    wave: int | None = None
    plan_id: str | None = None
    approved: dict[str, str] = dataclasses.field(default_factory=dict)
    """With ``--plan``: each cluster's approved key managers (JSON), the only ones changed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """The operator's word after wave ``wave``: go on, or stop the rollout."""

    wave: int
    go: bool


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ChunkDone:
    """A chunk's end: its clusters' report events (codec JSON, ``pack``ed), or why none ran."""

    clusters: list[str]
    wave: int | None = None
    events: str = ""
    """``pack`` of the events' codec JSON ("": none)."""
    targets: int = 0
    failures: int = 0
    changes: int | None = None
    """Targets the chunk added or removed (carried-over ones aside); None from a worker
    that did not count them (then the pause after its wave is kept)."""
    skipped: str | None = None
    """The reason the clusters were not started (``max_failures``, ``rollout_stopped`` …)."""
    error: str | None = None
    """Why the activity itself failed (a worker's inventory differs, retries ran out)."""
    retried: dict[str, int] = dataclasses.field(default_factory=dict)
    """Requests retried by the chunk's engine, by ``category code`` (the closing summary's
    "retried attempts": the one count the report does not hold)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """A page of chunks done, from ``start``; ``finished`` once the rollout is over."""

    done: list[ChunkDone]
    total: int
    """Clusters in the rollout."""
    finished: bool
    stop: str | None = None
    waves: int = 0
    asking: int | None = None
    """The wave just finished whose go-ahead the rollout waits for (``--confirm-waves``);
    given only on the page that reaches the last cluster done."""
