"""One run: waves of clusters admitted by a connection budget, thresholds, interrupts.

The clusters of the current wave start in rollout order, each as soon as its connections
fit in the run's budget (``_admission``), and give them back when done: as many clusters
progress at once as the budget allows, a slow one holds only its own connections, and
memory stays bounded whatever the fleet's size (a task per active cluster, no more).
A wave runs to completion before the next starts; between waves the failure threshold,
the pause and the operator's confirmation decide whether the rollout goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version as _package_version
from typing import Final

import structlog

from bulkkm.engine._admission import Admission, Ticket, default_max_connections
from bulkkm.engine._cluster import ClusterRun
from bulkkm.engine._options import Command, Options, RunControl
from bulkkm.events import (
    CHANGES,
    ClusterResult,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    Subscriber,
    TargetResult,
    TargetsKnown,
    WaveFinished,
    WaveStarted,
)
from bulkkm.fanout import Fanout
from bulkkm.inventory import Cluster, Inventory
from bulkkm.ontap import TlsContexts
from bulkkm.rollout import order_clusters, split_waves

__all__ = ["Run", "exit_code"]

VERSION: Final = _package_version("bulkkm")
STOPS: Final = frozenset({"max_failures", "max_fail_percent", "rollout_stopped", "declined"})
START_BURST: Final = 32
"""Clusters started back to back before those started get a moment (``START_PAUSE``)."""
START_PAUSE: Final = 0.005
"""Seconds the dispatcher yields after each burst: at most 32 clusters start per turn of
the loop, ~6,400 a second where the loop keeps up, fewer where it is busy."""
log = structlog.get_logger("bulkkm.engine")


def exit_code(
    counts: Counter[str], clusters_failed: int, command: Command, stop: str | None
) -> int:
    """The process exit code for a finished run (../shared/CONTRACT.md)."""
    if stop == "interrupted":
        return 130
    if stop in STOPS:
        return 3
    if stop == "report_failed":
        return 1
    bad = (Outcome.FAILED, Outcome.BLOCKED, Outcome.SKIPPED, Outcome.CANCELLED)
    if clusters_failed or any(counts[o] for o in bad):
        return 1
    if command is Command.CHECK and (counts[Outcome.WOULD_ADD] or counts[Outcome.WOULD_REMOVE]):
        return 4
    return 0


class Run:
    """One run's shared state: counters, the stop flag, the current wave, the subscribers."""

    def __init__(
        self,
        inventory: Inventory,
        options: Options,
        subscribers: Sequence[Subscriber],
        control: RunControl,
    ) -> None:
        """Prepare; nothing is sent yet."""
        self.inventory = inventory
        self.options = options
        self.control = control
        self.run_id = str(uuid.uuid4())
        self.fanout = Fanout(subscribers, run_id=self.run_id, on_detach=self._detach)
        self.counts: Counter[str] = Counter()
        self.clusters_failed = 0
        self.failures = 0
        self.known_targets = 0
        self.clusters_settled = 0
        self.admission = Admission(
            options.max_connections or default_max_connections(),
            clusters=options.active_clusters,
            targets=options.max_targets,
        )
        self.tickets: dict[str, Ticket] = {}
        """The admission of each active cluster, by name."""
        self._stop: str | None = None
        self.tls = TlsContexts()
        """The run's TLS contexts: each distinct ``tls:`` block built once, for this run."""
        self.claimed: dict[str, str] = {}
        """Cluster uuid -> the inventory cluster that discovered it first in this run."""
        self.subscriber_error: str | None = None
        """Why an essential subscriber (the report) failed, if one did."""
        self.wave: int | None = None
        self.wave_counts: Counter[str] = Counter()
        self.wave_targets = 0
        self.wave_failures = 0
        self.wave_changes = 0
        """Targets the current wave added or removed (carried-over lines aside)."""
        self.waves = self._waves()

    def _waves(self) -> tuple[tuple[Cluster, ...], ...]:
        """The clusters in rollout order, cut into waves (one wave without ``--waves``)."""
        opts = self.options
        clusters = order_clusters(self.inventory.clusters, opts.wave_order, lambda c: c.name)
        if opts.waves is None:
            return (tuple(clusters),) if clusters else ()
        return split_waves(clusters, opts.waves, lambda c: c.wave)

    @property
    def stop(self) -> str | None:
        """Why the run stopped starting new work, once it has."""
        return self._stop

    @stop.setter
    def stop(self, reason: str | None) -> None:
        """Stop starting new work: clusters waiting for admission are skipped at once."""
        self._stop = reason
        self.admission.wake()

    def emit(self, event: Event) -> None:
        """Stamp an event and hand it to every subscriber; count outcomes; check the stops."""
        event = self.fanout.publish(event)
        if isinstance(event, TargetResult):
            self.counts[event.outcome.value] += 1
            self.wave_counts[event.outcome.value] += 1
            if event.outcome in CHANGES and not event.carried_over:
                self.wave_changes += 1
            if event.outcome is Outcome.FAILED:
                self._failed()
        elif isinstance(event, ClusterResult) and event.outcome is Outcome.FAILED:
            self.clusters_failed += 1
            self.wave_targets += 1
            self._failed()

    def _detach(self, subscriber: Subscriber, why: str) -> None:
        """The fan-out dropped a subscriber (it raised, or fell behind); the run goes on.

        The report is the exception: a run whose report cannot be written stops starting
        new work (in-flight requests finish), since nothing it did after would be on record.
        """
        if getattr(subscriber, "essential", False):
            self.subscriber_error = why.removeprefix("raised ")
            if self.stop is None:
                self.stop = "report_failed"

    def _failed(self) -> None:
        """Count a failure; stop starting new work once a threshold is exceeded."""
        self.failures += 1
        self.wave_failures += 1
        if self.stop is not None:
            return
        opts = self.options
        if opts.max_failures is not None and self.failures > opts.max_failures:
            self.stop = "max_failures"
        elif opts.max_fail_percent is not None and opts.waves is None:
            base = max(self.known_targets + self.clusters_failed, 1)
            if 100 * self.failures / base > opts.max_fail_percent:
                self.stop = "max_fail_percent"
        if self.stop is not None:
            log.warning("run_stopping", reason=self.stop, failures=self.failures)

    @property
    def interrupted(self) -> bool:
        """Whether the operator interrupted the run (set before ``stop`` is)."""
        return self.control.interrupted.is_set()

    def claim_cluster(self, uuid: str | None, name: str) -> str | None:
        """Claim a discovered cluster uuid for inventory cluster ``name``.

        Returns the other inventory cluster that claimed it first (the same cluster under
        another address: ``name`` must then send nothing), else None.
        """
        if uuid is None:
            return None
        first = self.claimed.setdefault(uuid, name)
        return None if first == name else first

    def settle_cluster(self, targets: int, *, cluster: str | None = None) -> None:
        """A cluster is discovered or given up on; once all are, the target count is final."""
        if cluster is not None and (ticket := self.tickets.get(cluster)) is not None:
            self.admission.discovered(ticket, targets)
        self.known_targets += targets
        self.wave_targets += targets
        self.clusters_settled += 1
        if self.clusters_settled == len(self.inventory.clusters):
            self.emit(TargetsKnown(targets=self.known_targets))

    def skip_cluster(self, cluster: Cluster, reason: str, wave: int | None) -> None:
        """A cluster not started: one ``cluster`` line, its targets unknown."""
        self.emit(
            ClusterResult(cluster=cluster.name, outcome=Outcome.SKIPPED, reason=reason, wave=wave)
        )
        self.settle_cluster(0)

    async def main(self) -> RunFinished:
        """Discover and apply every cluster, wave after wave, then report the summary."""
        started = datetime.now(UTC)
        opts = self.options
        self.emit(
            RunStarted(
                run_id=self.run_id,
                command=opts.command.value,
                dry_run=opts.read_only,
                started_at=started,
                inventory=str(self.inventory.path),
                inventory_sha256=self.inventory.sha256,
                version=VERSION,
                resumed_from=opts.resume.run_id if opts.resume else None,
                clusters=len(self.inventory.clusters) + len(opts.skipped_clusters),
                waves=tuple(str(w) for w in opts.waves) if opts.waves else None,
                ignore_windows=opts.ignore_windows,
                plan_id=opts.approved.plan_id if opts.approved else None,
                options=opts.flags,
            )
        )
        for name in opts.skipped_clusters:
            self._leave_out(name)
        if not self.inventory.clusters:
            self.emit(TargetsKnown(targets=0))
        with structlog.contextvars.bound_contextvars(run_id=self.run_id):
            await self._work()
        finished = datetime.now(UTC)
        summary = RunFinished(
            run_id=self.run_id,
            finished_at=finished,
            duration_ms=round((finished - started).total_seconds() * 1000),
            counts={str(k): v for k, v in self.counts.most_common()},
            clusters_failed=self.clusters_failed,
            exit_code=exit_code(self.counts, self.clusters_failed, opts.command, self.stop),
            aborted=self.stop is not None,
            stop_reason=self.stop,
            stop_detail=self.subscriber_error,
        )
        self.emit(summary)
        return summary

    def _leave_out(self, cluster: str) -> None:
        """A cluster outside ``--limit``: its lines from the resumed report, else ``skipped``.

        Carried unverified (the cluster is not contacted), so that the newest report of a
        resume chain still holds every target's last known outcome.
        """
        carried = self.options.resume.of_cluster(cluster) if self.options.resume else ()
        self.known_targets += len(carried)
        for old in carried:
            self.emit(dataclasses.replace(old, carried_over=True))
        if not carried:
            self.emit(ClusterResult(cluster=cluster, outcome=Outcome.SKIPPED, reason="limit"))

    async def _work(self) -> None:
        """The waves; after an interrupt, a grace period, then cancellation."""
        work = asyncio.ensure_future(self._rollout())
        interrupted = asyncio.ensure_future(self.control.interrupted.wait())
        try:
            await asyncio.wait((work, interrupted), return_when=asyncio.FIRST_COMPLETED)
            if not work.done():
                self.stop = "interrupted"
                log.warning("interrupted", grace_seconds=self.options.grace)
                done, _ = await asyncio.wait((work,), timeout=self.options.grace)
                if not done:
                    work.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await work
            else:
                work.result()
        finally:
            interrupted.cancel()
            if not work.done():  # our own caller cancelled us
                work.cancel()

    async def _rollout(self) -> None:
        """Each wave to completion; the clusters of waves not reached are skipped."""
        remaining = list(enumerate(self.waves, 1))
        try:
            while remaining and self.stop is None:
                number, wave = remaining.pop(0)
                await self._wave(number, wave)
                if remaining and self.stop is None:
                    await self._between_waves()
        finally:
            for number, wave in remaining:
                for cluster in wave:
                    self.skip_cluster(cluster, self.stop or "interrupted", self._wave_of(number))

    async def _wave(self, number: int, wave: Sequence[Cluster]) -> None:
        """One wave through admission; the rollout stops here if it failed too much."""
        self.wave = self._wave_of(number)
        self.wave_counts, self.wave_targets, self.wave_failures = Counter(), 0, 0
        self.wave_changes = 0
        names = tuple(c.name for c in wave)
        if self.wave is not None:
            self.emit(WaveStarted(number=number, of=len(self.waves), clusters=names))
        clusters = deque(wave)
        try:
            await self._admit(clusters)
        finally:
            for cluster in clusters:  # left when an interrupt cancelled the admission
                self.skip_cluster(cluster, "interrupted", self.wave)
        limit = self.options.max_fail_percent or 0.0
        percent = 100 * self.wave_failures / max(self.wave_targets, 1)
        if self.wave is not None and self.stop is None and percent > limit:
            self.stop = "rollout_stopped"
            log.warning("rollout_stopped", wave=number, failed=self.wave_failures)
        if self.wave is not None:
            self.emit(
                WaveFinished(
                    number=number,
                    of=len(self.waves),
                    clusters=names,
                    targets=self.wave_targets,
                    failed=self.wave_failures,
                    counts=dict(self.wave_counts),
                    stop=self.stop,
                )
            )

    async def _between_waves(self) -> None:
        """The pause, then the operator's word, before the next wave.

        No pause after a wave in which this run changed nothing and nothing failed (a
        resumed rollout's waves done before): there is nothing to let settle. The operator
        is still asked.
        """
        opts = self.options
        if opts.pause_between_waves > 0 and not (self.wave_changes or self.wave_failures):
            log.info("pause_skipped", wave=self.wave, reason="this run changed nothing in the wave")
        elif opts.pause_between_waves > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(opts.pause_between_waves):
                    await self.control.interrupted.wait()
        if opts.confirm_wave is not None and self.stop is None:
            finished = WaveFinished(
                number=self.wave or 0,
                of=len(self.waves),
                clusters=(),
                targets=self.wave_targets,
                failed=self.wave_failures,
                counts=dict(self.wave_counts),
            )
            if not await opts.confirm_wave(finished):
                self.stop = "declined"

    def _wave_of(self, number: int) -> int | None:
        """The wave number reports carry: None when not rolling out in waves."""
        return number if self.options.waves is not None else None

    async def _admit(self, clusters: deque[Cluster]) -> None:
        """Start each cluster, in order, once its connections fit; the rest once stopped, skip.

        A cluster leaves ``clusters`` only when it starts or is skipped, so whatever an
        interrupt leaves there is still to be reported.
        """
        admission = self.admission
        started = 0
        async with asyncio.TaskGroup() as group:
            while clusters:
                cluster = clusters[0]
                concurrency = cluster.limits.concurrency
                ticket = await admission.admit(concurrency, stopped=lambda: self.stop is not None)
                clusters.popleft()
                if ticket is None:
                    self.skip_cluster(cluster, self.stop or "interrupted", self.wave)
                    continue
                window = cluster.window
                now = self.options.clock()
                if self.options.windows and window is not None and window.closes_at(now) is None:
                    admission.release(ticket)
                    self.skip_cluster(cluster, "outside_window", self.wave)
                    continue
                self.tickets[cluster.name] = ticket
                group.create_task(self._cluster(cluster, ticket))
                started += 1
                if started % START_BURST == 0:
                    # Let those just started connect before more compete with them: a
                    # thousand clusters opening TLS connections at once would each wait
                    # for all the others' handshakes before their first request.
                    await asyncio.sleep(START_PAUSE)

    async def _cluster(self, cluster: Cluster, ticket: Ticket) -> None:
        """One admitted cluster's work; its share of the budgets goes back after."""
        try:
            with structlog.contextvars.bound_contextvars(cluster=cluster.name):
                await ClusterRun(self, cluster).run()
        finally:
            del self.tickets[cluster.name]
            self.admission.release(ticket)
