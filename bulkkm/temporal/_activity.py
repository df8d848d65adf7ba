"""The activity a regional worker runs: a chunk of its region's clusters, with bulkkm's engine.

The worker loads the inventory itself, so every secret (``env:``, ``file:``) is resolved
from the worker's environment and none goes through Temporal; the activity's input names
the clusters and carries the run request (paths and options), its result the clusters'
report events. Idempotent by the engine's read-back rules: a retried activity rediscovers
its clusters, so what an earlier attempt added is found ``present``, never sent twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import orjson
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from bulkkm import codec, engine
from bulkkm.console import RetryCount
from bulkkm.engine import RunControl
from bulkkm.engine._run import Run
from bulkkm.errors import BulkkmError
from bulkkm.events import CHANGES, ClusterResult, Event, Outcome, TargetResult, Verified
from bulkkm.ontap import TlsContexts
from bulkkm.request import RunRequest
from bulkkm.temporal._claims import identify
from bulkkm.temporal._inventories import InventoryCache
from bulkkm.temporal._wire import ACTIVITY, BEGIN, CLAIM, ChunkDone, ChunkTask, pack, workflow_id

__all__ = ["ClusterActivity"]

log = structlog.get_logger("bulkkm")

HEARTBEAT_EVERY: Final = 2.0
"""Seconds between heartbeats while clusters run (the workflow waits 30 s by default)."""


class ClusterActivity:
    """Runs clusters of one region from the worker's own copy of the inventory."""

    def __init__(self, inventory: Path, region: str) -> None:
        """The inventory file this worker reads, and the region it serves."""
        self.inventory = inventory
        self.inventories = InventoryCache(inventory)
        self.region = region

    @activity.defn(name=ACTIVITY)
    async def run_clusters(self, task: ChunkTask) -> ChunkDone:
        """Discover, plan and apply a chunk of clusters; their report events, heartbeating."""
        with structlog.contextvars.bound_contextvars(
            region=self.region, attempt=activity.info().attempt
        ):
            log.info("chunk_activity_started", run=task.run_id, clusters=task.clusters)
            beat = asyncio.create_task(_heartbeat())
            try:
                done = await self._run(task)
            finally:
                beat.cancel()
            log.info(
                "chunk_activity_finished",
                clusters=len(task.clusters),
                targets=done.targets,
                failures=done.failures,
            )
            return done

    async def _run(self, task: ChunkTask) -> ChunkDone:
        """The engine over an inventory of these clusters, its events collected."""
        if task.region != self.region:
            raise _refused(f"clusters of region {task.region} sent to {self.region}")
        handle = activity.client().get_workflow_handle(workflow_id(task.run_id))
        if not await handle.execute_update(BEGIN, task.clusters[0], result_type=bool):
            # The rollout stopped while this chunk waited for a worker: the workflow took it
            # back and reports its clusters skipped; nothing is sent.
            log.info("chunk_not_begun", clusters=len(task.clusters))
            return ChunkDone(clusters=task.clusters, wave=task.wave, skipped="stopped")
        try:
            request = RunRequest.from_json(orjson.loads(task.request_json))
            loaded = self.inventories.get(task.inventory_sha256)
        except BulkkmError as exc:
            raise _refused(str(exc)) from exc
        if loaded.inventory.sha256 != task.inventory_sha256:
            raise _refused(
                f"this worker's inventory {self.inventory} differs from the coordinator's "
                "(sha256): deploy the same file to every worker"
            )
        clusters = loaded.only(tuple(task.clusters))
        strays = set(task.clusters) - {c.name for c in clusters.clusters if c.region == self.region}
        if strays:
            raise _refused(f"clusters {sorted(strays)} are not in region {self.region} here")
        events: list[Event] = []
        collect = _Collect(events, task.wave)
        options = _options(request, _approved(task))
        # ``engine.run``, but each cluster claimed in the workflow first (see ``_claims``).
        tls = TlsContexts()
        found = await identify(clusters.clusters, tls, options.retry)
        for name, error in found.failed.items():
            collect(
                ClusterResult(
                    cluster=name,
                    outcome=Outcome.FAILED,
                    error=error,
                    reason="discovery_failed",
                )
            )
        if found.failed:
            clusters = loaded.only(tuple(n for n in task.clusters if n not in found.failed))
        retries = RetryCount()
        the_run = Run(clusters, options, [collect, retries], RunControl())
        the_run.tls = tls
        if found.uuids:
            firsts: dict[str, str] = await handle.execute_update(
                CLAIM, found.uuids, result_type=dict[str, str]
            )
            the_run.claimed.update({found.uuids[name]: first for name, first in firsts.items()})
        if clusters.clusters:
            try:
                await the_run.main()
            finally:
                await the_run.fanout.drain()
        return _done(task, events, retries.retried)


def _options(request: RunRequest, approved: engine.ApprovedPlan | None) -> engine.Options:
    """The engine's options for one cluster of the run.

    No waves, pauses or thresholds (the workflow's, across regions), no output (the
    coordinator writes the report), every cluster given is worked. No resume either: the
    coordinator carries the old lines of targets the cluster shows done (``_coordinator``).
    """
    return engine.Options(
        approved=approved,
        command=engine.Command(request.command),
        dry_run=request.dry_run,
        ignore_windows=request.ignore_windows,
        verify_timeout=300.0 if request.verify_timeout is None else request.verify_timeout,
        verify_keys=request.verify_keys,
        max_connections=request.max_connections,
    )


def _approved(task: ChunkTask) -> engine.ApprovedPlan | None:
    """With ``--plan``: the clusters' approved key managers, as the engine takes them."""
    if task.plan_id is None:
        return None
    return engine.ApprovedPlan(
        plan_id=task.plan_id,
        clusters={name: _key_managers(task.approved.get(name)) for name in task.clusters},
    )


def _key_managers(text: str | None) -> dict[str, engine.ApprovedKeyManager]:
    """One cluster's approved key managers from their JSON (none: nothing approved)."""
    body = orjson.loads(text or "{}")
    return {
        uuid: engine.ApprovedKeyManager(
            svm=km["svm"],
            fingerprint=tuple(km["fingerprint"]),
            add=tuple(km["add"]),
            remove=tuple(km["remove"]),
        )
        for uuid, km in body.items()
    }


@dataclasses.dataclass(slots=True)
class _Collect:
    """A subscriber keeping the events that make report lines, stamped with the wave."""

    events: list[Event]
    wave: int | None

    def __call__(self, event: Event) -> None:
        """Keep target, verify and cluster events (the run's own lines are the coordinator's)."""
        if isinstance(event, TargetResult | Verified | ClusterResult):
            self.events.append(dataclasses.replace(event, wave=self.wave))


def _done(task: ChunkTask, events: list[Event], retried: Mapping[str, int]) -> ChunkDone:
    """The activity's result: the events as packed codec JSON, what the thresholds count,
    the retries."""
    targets = failures = changes = 0
    for event in events:
        if isinstance(event, TargetResult):
            targets += 1
            failures += event.outcome is Outcome.FAILED
            changes += event.outcome in CHANGES and not event.carried_over
        elif isinstance(event, ClusterResult) and event.outcome is Outcome.FAILED:
            targets += 1  # as in-process: a failed cluster counts as one failed target
            failures += 1
    return ChunkDone(
        clusters=task.clusters,
        wave=task.wave,
        events=pack([codec.to_json(e) for e in events]),
        targets=targets,
        failures=failures,
        changes=changes,
        retried=dict(retried),
    )


def _refused(message: str) -> ApplicationError:
    """An error no retry can cure: the workflow records the cluster as failed."""
    log.error("cluster_refused", message=message)
    return ApplicationError(message, type="WorkerRefused", non_retryable=True)


async def _heartbeat() -> None:
    """Tell Temporal this worker is alive, until cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY)
