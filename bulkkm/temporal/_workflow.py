"""The rollout workflow: waves in order, clusters fanned out to their regions, thresholds.

Deterministic code only (Temporal replays it): no bulkkm import beyond the plain values of
``_wire``, no clock, no I/O. Each wave's clusters go out in chunks of one region (an
activity each: see ``CHUNK`` for why not one per cluster); each chunk's result (its report
events, compressed) is kept for the coordinator's ``progress`` query. Between chunks it
decides what the in-process engine decides between clusters: stop after
``--max-failures`` failures across the fleet, after a wave over ``--max-fail-percent``
(with waves), or once the failure percentage of the targets known so far is over it
(without).

History stays within Temporal's limits (51,200 events, 50 MB) at 10,000 clusters x 20
SVMs: measured 3,549 events and 11.6 MB (``python -m bench.temporal``; results compressed
about 7 to 1).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import timedelta
from typing import Final

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from bulkkm.temporal._wire import (
        ACTIVITY,
        BEGIN,
        CLAIM,
        HALT,
        PAGE_CHARS,
        PROCEED,
        SIDE,
        WORKFLOW,
        Answer,
        ChunkDone,
        ChunkTask,
        ClusterJob,
        Progress,
        RolloutInput,
        chunk_key,
        task_queue,
        unpack_waves,
    )

__all__ = ["Rollout"]

PAUSE_ONLY_AFTER_CHANGES: Final = "pause-only-after-a-wave-that-changed-something"
"""The patch (``workflow.patched``) that skips the pause after a wave that did nothing."""
_RETRIES = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=10,
    # A worker whose inventory differs, or that does not know the cluster, will not change
    # its mind on a retry.
    non_retryable_error_types=["WorkerRefused"],
)


@workflow.defn(name=WORKFLOW)
class Rollout:
    """One run across regions: the waves, the clusters' activities and the stop rules."""

    def __init__(self) -> None:
        """Nothing done yet."""
        self._done: list[ChunkDone] = []
        self._total = 0
        self._finished = False
        self._stop: str | None = None
        self._failures = 0
        self._base = 0
        self._claims: dict[str, str] = {}
        """Cluster uuid -> the inventory cluster that claimed it first in this run."""
        self._side: dict[str, str] = {}
        self._parts = 0
        self._waves = 0
        self._asking: int | None = None
        self._answer: bool | None = None
        self._waiting: dict[str, asyncio.Task[ChunkDone]] = {}
        """Chunks handed to Temporal whose activity has not begun (no worker took it yet)."""
        self._begun: set[str] = set()
        self._taken_back: set[str] = set()

    @workflow.update(name=BEGIN)
    def begin(self, chunk: str) -> bool:
        """An activity asks to begin its chunk: no once the rollout stopped (unless begun).

        Like a cluster waiting for admission in-process, a chunk no worker has begun is not
        started after a stop: its clusters are ``skipped``.
        """
        if chunk in self._begun:
            return True  # a retried attempt of a chunk in flight
        if self._stop is not None:
            return False
        self._begun.add(chunk)
        self._waiting.pop(chunk, None)
        return True

    @workflow.signal(name=SIDE)
    def side(self, part: dict[str, str]) -> None:
        """A part of the per-cluster data, by cluster name."""
        self._side.update(part)
        self._parts += 1

    @workflow.signal(name=HALT)
    def halt(self, reason: str) -> None:
        """Start no new cluster (the coordinator's Ctrl-C); those in flight finish."""
        if self._stop is None:
            self._stop = reason
        self._drop_waiting()

    def _drop_waiting(self) -> None:
        """After a stop: the chunks no worker has begun are taken back (their clusters skipped)."""
        for key, task in self._waiting.items():
            self._taken_back.add(key)
            task.cancel()
        self._waiting.clear()

    @workflow.signal(name=PROCEED)
    def proceed(self, answer: Answer) -> None:
        """The operator's word on the wave asked about (an answer to another is ignored)."""
        if answer.wave == self._asking:
            self._answer = answer.go

    @workflow.update(name=CLAIM)
    def claim(self, found: dict[str, str]) -> dict[str, str]:
        """Claim discovered clusters (uuid by inventory name); those another name had first.

        A retried activity claims its clusters again under the same names: the same answer.
        """
        taken = {}
        for name, uuid in found.items():
            first = self._claims.setdefault(uuid, name)
            if first != name:
                taken[name] = first
        return taken

    @workflow.query
    def progress(self, start: int) -> Progress:
        """The chunks finished from index ``start`` (one page), and whether the run is over."""
        page: list[ChunkDone] = []
        size = 0
        for done in self._done[start:]:
            if page and size + len(done.events) > PAGE_CHARS:
                break
            page.append(done)
            size += len(done.events)
        last = start + len(page) >= len(self._done)
        return Progress(
            done=page,
            total=self._total,
            finished=self._finished and last,
            stop=self._stop,
            waves=self._waves,
            asking=self._asking if last else None,
        )

    @workflow.run
    async def run(self, spec: RolloutInput) -> str | None:
        """Every wave to its end, or until a threshold stops the rollout; returns the stop."""
        waves = unpack_waves(spec.jobs)
        self._total = sum(len(wave) for wave in waves)
        self._waves = len(waves) if spec.rolling else 0
        if spec.side_parts:
            await self._receive(spec)
        acted = True
        for number, wave in enumerate(waves):
            if number and self._stop is None:
                # As in-process: no pause after a wave that changed nothing and failed
                # nothing (a resumed rollout's waves done before). A patch: workflows begun
                # before it replay with their pause.
                idle = not acted and workflow.patched(PAUSE_ONLY_AFTER_CHANGES)
                if spec.pause_between_waves > 0 and not idle:
                    with contextlib.suppress(TimeoutError):  # a halt ends the pause
                        await workflow.wait_condition(
                            lambda: self._stop is not None, timeout=spec.pause_between_waves
                        )
                if spec.confirm_waves:
                    await self._ask(number)
            if self._stop is not None:
                self._skip(wave, self._stop)
                continue
            failures, targets, changes = await self._wave(spec, wave)
            acted = bool(failures) or changes != 0
            limit = spec.max_fail_percent or 0.0
            if spec.rolling and self._stop is None and 100 * failures / max(targets, 1) > limit:
                self._stop = "rollout_stopped"
        self._finished = True
        return self._stop

    async def _receive(self, spec: RolloutInput) -> None:
        """Wait for every part of the per-cluster data; without it nothing may start."""
        try:
            await workflow.wait_condition(
                lambda: self._parts >= spec.side_parts, timeout=timedelta(minutes=10)
            )
        except TimeoutError:
            self._stop = "plan_not_received"

    async def _ask(self, finished: int) -> None:
        """Wait for the operator's word on wave ``finished``; no is a stop (``declined``)."""
        self._asking, self._answer = finished, None
        await workflow.wait_condition(lambda: self._answer is not None or self._stop is not None)
        if self._stop is None and not self._answer:
            self._stop = "declined"
        self._asking = None

    async def _wave(
        self, spec: RolloutInput, wave: list[ClusterJob]
    ) -> tuple[int, int, int | None]:
        """One wave in chunks, ``spec.parallel`` clusters at a time; its failures, targets and
        changes (None when a chunk did not count them)."""
        pending = deque(_chunks(wave, spec.chunk, spec.parallel))
        running: set[asyncio.Task[ChunkDone]] = set()
        in_flight = 0
        failures = targets = 0
        changes: int | None = 0
        while pending or running:
            while (
                pending
                and self._stop is None
                and (not running or in_flight + len(pending[0]) <= spec.parallel)
            ):
                chunk = pending.popleft()
                in_flight += len(chunk)
                task = asyncio.ensure_future(self._chunk(spec, chunk))
                self._waiting[chunk_key(chunk)] = task
                running.add(task)
            if self._stop is not None and pending:
                for chunk in pending:
                    self._skip(chunk, self._stop)
                pending.clear()
            if not running:
                break
            finished, left = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running = set(left)
            for task in sorted(finished, key=lambda t: t.result().clusters[0]):
                done = task.result()
                in_flight -= len(done.clusters)
                self._done.append(done)
                failures += done.failures
                targets += done.targets
                if changes is not None and not done.skipped:
                    changes = None if done.changes is None else changes + done.changes
                self._count(spec, done)
            if self._stop is not None:
                self._drop_waiting()
        return failures, targets, changes

    def _count(self, spec: RolloutInput, done: ChunkDone) -> None:
        """Add a chunk's failures; stop starting clusters once a threshold is exceeded."""
        self._failures += done.failures
        self._base += done.targets
        if self._stop is not None or not done.failures:
            return
        if spec.max_failures is not None and self._failures > spec.max_failures:
            self._stop = "max_failures"
        elif (
            spec.max_fail_percent is not None
            and not spec.rolling
            and 100 * self._failures / max(self._base, 1) > spec.max_fail_percent
        ):
            self._stop = "max_fail_percent"

    def _skip(self, jobs: list[ClusterJob], reason: str) -> None:
        """Clusters never started: each one ``skipped`` for ``reason``."""
        if jobs:
            names = [j.name for j in jobs]
            self._done.append(ChunkDone(clusters=names, wave=jobs[0].wave, skipped=reason))

    async def _chunk(self, spec: RolloutInput, jobs: list[ClusterJob]) -> ChunkDone:
        """One chunk's activity on its region's queue; a failed activity fails its clusters."""
        names = [j.name for j in jobs]
        task = ChunkTask(
            run_id=spec.run_id,
            request_json=spec.request_json,
            inventory_sha256=spec.inventory_sha256,
            region=jobs[0].region,
            clusters=names,
            wave=jobs[0].wave,
            plan_id=spec.plan_id,
            approved={n: self._side[n] for n in names if n in self._side},
        )
        try:
            return await self._activity(spec, task)
        except (asyncio.CancelledError, ActivityError) as exc:
            if chunk_key(jobs) in self._taken_back:
                # Taken back after a stop, before any worker began it (``_drop_waiting``):
                # its clusters were never started. The cancellation is ours, and ends here.
                return ChunkDone(
                    clusters=names, wave=task.wave, skipped=self._stop or "interrupted"
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
            cause = exc.cause if exc.cause is not None else exc
            return ChunkDone(
                clusters=names,
                wave=task.wave,
                error=str(cause),
                failures=len(names),
                targets=len(names),
            )
        finally:
            self._waiting.pop(chunk_key(jobs), None)

    async def _activity(self, spec: RolloutInput, task: ChunkTask) -> ChunkDone:
        """The chunk's activity, on its region's task queue, retried as ``_RETRIES`` says."""
        done: ChunkDone = await workflow.execute_activity(
            ACTIVITY,
            task,
            task_queue=task_queue(task.region),
            start_to_close_timeout=timedelta(hours=12),
            heartbeat_timeout=timedelta(seconds=spec.heartbeat_timeout),
            retry_policy=_RETRIES,
            result_type=ChunkDone,
        )
        return done


def _chunks(wave: list[ClusterJob], most: int, parallel: int) -> list[list[ClusterJob]]:
    """A wave's clusters cut into chunks of one region each, in rollout order.

    At most ``most`` clusters a chunk, and fewer in a small wave, so that the wave still
    spreads over several activities (a region's worker runs them side by side).
    """
    regions: dict[str, list[ClusterJob]] = {}
    for job in wave:
        regions.setdefault(job.region, []).append(job)
    size = max(1, min(most, parallel // 8, -(-len(wave) // 16)))
    chunks = [jobs[at : at + size] for jobs in regions.values() for at in range(0, len(jobs), size)]
    order = {job.name: n for n, job in enumerate(wave)}
    return sorted(chunks, key=lambda chunk: order[chunk[0].name])
