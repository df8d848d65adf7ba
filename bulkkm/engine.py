"""The engine: discover, plan and apply across the fleet; the only place with task groups,
semaphores, rate limiters and deadlines.

A fixed pool of cluster workers takes clusters in inventory order, so memory stays bounded
whatever the fleet's size. Each cluster is discovered, planned and applied on its own:
a slow or broken cluster holds up nobody else. Within a cluster, up to ``concurrency``
batch workers send the POSTs; every request passes the cluster's gate (semaphore, then rate
limiter), held for that request only, never across a backoff sleep.

Every target ends with exactly one ``TargetResult``: a ``_ClusterRun`` keeps the targets it
has not reported yet and, whatever happens (a stop, a broken cluster, cancellation), reports
each of them once before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import uuid
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from importlib.metadata import version as _package_version
from typing import Final, TypeVar

import aiohttp
import stamina
import structlog
from aiolimiter import AsyncLimiter
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from bulkkm.errors import ApiError, AuthError, ErrorCategory, OntapError, TransportError
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    Retrying,
    RunFinished,
    RunStarted,
    Subscriber,
    TargetResult,
    TargetsKnown,
)
from bulkkm.inventory import Cluster, Inventory, SelectorKind
from bulkkm.ontap import OntapClient
from bulkkm.plan import Action, Batch, ClusterState, Decision, batches, plan_cluster
from bulkkm.report import TargetKey
from bulkkm.retry import (
    ALREADY_CONFIGURED,
    KMIP_CRYPTSOFT,
    KMIP_CRYPTSOFT_ATTEMPTS,
    RetryPolicy,
    is_retryable,
)

__all__ = ["Command", "Options", "Resume", "RetryPolicy", "RunControl", "exit_code", "run"]

VERSION: Final = _package_version("bulkkm")
KEEPALIVE: Final = 3.0
"""Seconds an idle connection stays open: longer than a cluster's gaps, short for a fleet."""
A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")
log = structlog.get_logger("bulkkm.engine")


class Command(StrEnum):
    """What a run is for."""

    PLAN = "plan"
    CHECK = "check"
    APPLY = "apply"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """The report a run resumes from: its id and the targets it finished."""

    run_id: str
    done: dict[TargetKey, TargetResult]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How one run behaves."""

    command: Command = Command.APPLY
    dry_run: bool = False
    max_failures: int | None = None
    max_fail_percent: float | None = None
    resume: Resume | None = None
    retry: RetryPolicy = RetryPolicy()
    max_connections: int = 1024
    """The cap on open connections over the whole fleet."""
    active_clusters: int = 256
    """Clusters worked on at once; the rest wait their turn, in inventory order."""
    breaker_threshold: int = 10
    """Transport failures in a row after which a cluster's remaining targets are skipped."""
    grace: float = 5.0
    """Seconds in-flight requests get to finish after an interrupt."""
    skipped_clusters: tuple[str, ...] = ()
    """Clusters of the inventory left out of this run (``--limit``): one ``skipped`` line each."""

    @property
    def read_only(self) -> bool:
        """Whether nothing but GET may leave the process."""
        return self.dry_run or self.command is not Command.APPLY


class RunControl:
    """Stops a run from outside it: the CLI's signal handlers call ``interrupt``."""

    def __init__(self) -> None:
        """Not stopped."""
        self.interrupted = asyncio.Event()

    def interrupt(self) -> None:
        """Start no new work; in-flight requests get the grace period, then are cancelled."""
        self.interrupted.set()


def exit_code(
    counts: Counter[str], clusters_failed: int, command: Command, stop: str | None
) -> int:
    """The process exit code for a finished run (../shared/CONTRACT.md)."""
    if stop == "interrupted":
        return 130
    if stop is not None:
        return 3
    bad = (Outcome.FAILED, Outcome.BLOCKED, Outcome.SKIPPED, Outcome.CANCELLED)
    if clusters_failed or any(counts[o] for o in bad):
        return 1
    if command is Command.CHECK and counts[Outcome.WOULD_ADD]:
        return 4
    return 0


async def run(
    inventory: Inventory,
    options: Options,
    subscribers: Sequence[Subscriber],
    *,
    control: RunControl | None = None,
) -> RunFinished:
    """Run ``options.command`` over the inventory; every event goes to every subscriber."""
    return await _Run(inventory, options, subscribers, control or RunControl()).main()


_retry_reporter: contextvars.ContextVar[Callable[[RetryDetails], None]] = contextvars.ContextVar(
    "bulkkm_retry_reporter"
)


def _on_retry(details: RetryDetails) -> None:
    """stamina's hook: tell the batch being retried (its context knows what it is)."""
    reporter = _retry_reporter.get(None)
    if reporter is not None:
        reporter(details)


# stamina's default hooks would log the retried call's arguments; ours carries only the event.
set_on_retry_hooks([_on_retry])


class _Stopped(Exception):
    """Raised inside a batch when its cluster's breaker is open or the run is stopping."""

    def __init__(self, outcome: Outcome, reason: str, error: ErrorInfo | None) -> None:
        """How the targets that meet the stop end."""
        super().__init__(reason)
        self.outcome, self.reason, self.error = outcome, reason, error


class _Run:
    """One run's shared state: counters, stop flag, subscribers."""

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
        self.subscribers = tuple(subscribers)
        self.control = control
        self.run_id = str(uuid.uuid4())
        self.counts: Counter[str] = Counter()
        self.clusters_failed = 0
        self.failures = 0
        self.known_targets = 0
        self.clusters_settled = 0
        self.stop: str | None = None
        self.cancelling = False

    def emit(self, event: Event) -> None:
        """Hand an event to every subscriber; count outcomes; check the stop thresholds."""
        for subscriber in self.subscribers:
            subscriber(event)
        if isinstance(event, TargetResult):
            self.counts[event.outcome] += 1
            if event.outcome is Outcome.FAILED:
                self.failures += 1
                self._check_thresholds()
        elif isinstance(event, ClusterResult) and event.outcome is Outcome.FAILED:
            self.clusters_failed += 1
            self.failures += 1
            self._check_thresholds()

    def _check_thresholds(self) -> None:
        """Stop starting new work once ``--max-failures`` or ``--max-fail-percent`` is exceeded."""
        if self.stop is not None:
            return
        opts = self.options
        if opts.max_failures is not None and self.failures > opts.max_failures:
            self.stop = "max_failures"
        elif opts.max_fail_percent is not None:
            base = max(self.known_targets + self.clusters_failed, 1)
            if 100 * self.failures / base > opts.max_fail_percent:
                self.stop = "max_fail_percent"
        if self.stop is not None:
            log.warning("run_stopping", reason=self.stop, failures=self.failures)

    def settle_cluster(self, targets: int) -> None:
        """A cluster is discovered or given up on; once all are, the target count is final."""
        self.known_targets += targets
        self.clusters_settled += 1
        if self.clusters_settled == len(self.inventory.clusters):
            self.emit(TargetsKnown(targets=self.known_targets))

    async def main(self) -> RunFinished:
        """Discover and apply every cluster, then report the summary."""
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
            )
        )
        for name in opts.skipped_clusters:
            self.emit(ClusterResult(cluster=name, outcome=Outcome.SKIPPED, reason="limit"))
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
        )
        self.emit(summary)
        return summary

    async def _work(self) -> None:
        """The cluster worker pool, under one session, cancelled after an interrupt's grace."""
        # Idle connections of finished clusters close soon: each TLS connection holds a
        # 256 KiB read buffer in asyncio, and a fleet has thousands of clusters.
        connector = aiohttp.TCPConnector(
            limit=self.options.max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE
        )
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            clusters = iter(self.inventory.clusters)
            workers = min(self.options.active_clusters, len(self.inventory.clusters))
            work = asyncio.ensure_future(self._pool(session, clusters, workers))
            interrupted = asyncio.ensure_future(self.control.interrupted.wait())
            try:
                await asyncio.wait((work, interrupted), return_when=asyncio.FIRST_COMPLETED)
                if not work.done():
                    self.stop = "interrupted"
                    log.warning("interrupted", grace_seconds=self.options.grace)
                    done, _ = await asyncio.wait((work,), timeout=self.options.grace)
                    if not done:
                        self.cancelling = True
                        work.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await work
                else:
                    work.result()
            finally:
                interrupted.cancel()
                if not work.done():  # our own caller cancelled us
                    work.cancel()

    async def _pool(
        self, session: aiohttp.ClientSession, clusters: Iterator[Cluster], workers: int
    ) -> None:
        """``workers`` tasks, each taking the next cluster until none is left."""
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._cluster_worker(session, clusters))
        finally:
            for cluster in clusters:  # left when an interrupt cancelled the pool
                self.emit(
                    ClusterResult(
                        cluster=cluster.name, outcome=Outcome.SKIPPED, reason="interrupted"
                    )
                )
                self.settle_cluster(0)

    async def _cluster_worker(
        self, session: aiohttp.ClientSession, clusters: Iterator[Cluster]
    ) -> None:
        """Work clusters one after another; once the run stops, record the rest as skipped."""
        for cluster in clusters:
            if self.stop is not None:
                self.emit(
                    ClusterResult(cluster=cluster.name, outcome=Outcome.SKIPPED, reason=self.stop)
                )
                self.settle_cluster(0)
                continue
            with structlog.contextvars.bound_contextvars(cluster=cluster.name):
                await _ClusterRun(self, session, cluster).run()


class _Gate:
    """A cluster's admission for one request: its semaphore, then its rate limiter."""

    __slots__ = ("_limiter", "_semaphore")

    def __init__(self, cluster: Cluster) -> None:
        """Sized from the cluster's limits."""
        self._semaphore = asyncio.Semaphore(cluster.limits.concurrency)
        rate = cluster.limits.rate
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None

    @contextlib.asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        """Hold a slot for the length of one request."""
        async with self._semaphore:
            if self._limiter is not None:
                await self._limiter.acquire()
            yield


class _ClusterRun:
    """One cluster: discover, plan, apply; every target reported exactly once."""

    def __init__(self, run: _Run, session: aiohttp.ClientSession, cluster: Cluster) -> None:
        """Bind the cluster to the run's session behind its own gate."""
        self.parent = run
        self.cluster = cluster
        self.client = OntapClient(
            session, cluster, gate=_Gate(cluster), read_only=run.options.read_only
        )
        self.unreported: dict[TargetKey, Decision] = {}
        self.transport_failures = 0
        self.broken: _Stopped | None = None

    async def run(self) -> None:
        """The whole life of the cluster in this run."""
        try:
            state = await self._discover()
        except OntapError as exc:
            self.parent.emit(
                ClusterResult(
                    cluster=self.cluster.name,
                    outcome=Outcome.FAILED,
                    error=ErrorInfo.from_exception(exc),
                    reason="discovery_failed",
                )
            )
            self.parent.settle_cluster(0)
            return
        decisions = plan_cluster(self.cluster, state)
        self.unreported = {_key(d): d for d in decisions}
        self.parent.settle_cluster(len(decisions))
        self.parent.emit(
            ClusterDiscovered(
                cluster=self.cluster.name, version=str(state.version), targets=len(decisions)
            )
        )
        try:
            todo = self._settle_without_writes(decisions)
            pending = list(batches(todo, state.version))
            pending.reverse()  # pop() from the end keeps the plan's order
            workers = min(self.cluster.limits.concurrency, len(pending))
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._batch_worker(pending))
        except asyncio.CancelledError:
            self._report_rest(Outcome.CANCELLED, "interrupted", None)
            raise
        finally:
            if self.unreported:  # a stop left batches unstarted
                stop = self.broken or self._run_stop()
                self._report_rest(stop.outcome, stop.reason, stop.error)

    async def _discover(self) -> ClusterState:
        """The cluster's version and key managers (and SVM names when an explicit one is absent)."""
        async for attempt in self._attempts(None, ()):
            with attempt:
                version, key_managers = await _together(
                    self.client.version(), self.client.key_managers()
                )
                state = ClusterState(version=version, key_managers=key_managers)
                named = {s.pattern for s in self.cluster.svms if s.kind is SelectorKind.NAME}
                if named - {km.svm for km in state.key_managers}:
                    state = dataclasses.replace(state, svms=await self.client.svm_names())
                return state
        raise AssertionError("unreachable: stamina either returns or raises")

    def _settle_without_writes(self, decisions: tuple[Decision, ...]) -> list[Decision]:
        """Report what needs no write (present, blocked, resumed, read-only); return the rest."""
        now = datetime.now(UTC)
        resume = self.parent.options.resume
        todo: list[Decision] = []
        for d in decisions:
            if resume is not None and (done := resume.done.get(_key(d))) is not None:
                self._report(d, done.outcome, carried=done)
            elif d.action is Action.PRESENT:
                self._report(d, Outcome.PRESENT, started=now)
            elif d.action is Action.BLOCKED:
                error = ErrorInfo(category=ErrorCategory.PRECONDITION, message=d.detail or "")
                self._report(d, Outcome.BLOCKED, error=error, reason=d.reason, started=now)
            elif self.parent.options.read_only:
                self._report(d, Outcome.WOULD_ADD, started=now)
            else:
                todo.append(d)
        return todo

    async def _batch_worker(self, pending: list[Batch]) -> None:
        """Send batches until none is left or the run stops."""
        while pending and self.broken is None and self.parent.stop is None:
            await self._apply(pending.pop())

    async def _apply(self, batch: Batch) -> None:
        """POST one batch with retries; read back before any retry that could repeat a write."""
        started = datetime.now(UTC)
        remaining = list(batch.decisions)
        posts = 0
        sent = False  # whether a POST may have reached the cluster
        verify = False  # whether the last POST's fate is unknown
        cryptsoft = 0
        try:
            async for attempt in self._attempts(batch.svm, tuple(d.server for d in remaining)):
                with attempt:
                    if self.broken is not None:
                        raise self.broken
                    if verify:
                        remaining = self._confirm(
                            await self.client.key_server_names(batch.key_manager_uuid),
                            remaining,
                            Outcome.ADDED,
                            started,
                            posts,
                        )
                        verify = False
                    while remaining:
                        posts += 1
                        try:
                            await self.client.add_key_servers(
                                batch.key_manager_uuid, tuple(d.desired for d in remaining)
                            )
                        except TransportError as exc:
                            sent = sent or exc.sent
                            verify = exc.sent
                            raise
                        except ApiError as exc:
                            if exc.code == ALREADY_CONFIGURED:
                                if len(remaining) == 1:
                                    self._report(
                                        remaining[0],
                                        Outcome.PRESENT,
                                        started=started,
                                        attempts=posts,
                                    )
                                    return
                                live = await self.client.key_server_names(batch.key_manager_uuid)
                                remaining = self._confirm(
                                    live, remaining, Outcome.PRESENT, started, posts
                                )
                                continue  # the rest were refused with the batch: send them again
                            if exc.code == KMIP_CRYPTSOFT:
                                cryptsoft += 1
                                if cryptsoft >= KMIP_CRYPTSOFT_ATTEMPTS:
                                    exc.category = ErrorCategory.TLS
                            raise
                        for d in remaining:
                            self._report(d, Outcome.ADDED, started=started, attempts=posts)
                        return
        except OntapError as exc:
            error = ErrorInfo.from_exception(exc)
            for d in remaining:
                self._report(d, Outcome.FAILED, error=error, started=started, attempts=posts)
        except _Stopped as stop:
            # A target whose POST may have applied cannot be called skipped: its fate is unknown.
            outcome = Outcome.FAILED if sent else stop.outcome
            for d in remaining:
                self._report(
                    d,
                    outcome,
                    error=stop.error,
                    reason=stop.reason,
                    started=started,
                    attempts=posts,
                )
        except asyncio.CancelledError:
            for d in remaining:
                self._report(
                    d, Outcome.CANCELLED, reason="interrupted", started=started, attempts=posts
                )
            raise

    def _confirm(
        self,
        live: frozenset[str],
        remaining: list[Decision],
        outcome: Outcome,
        started: datetime,
        posts: int,
    ) -> list[Decision]:
        """Report the servers the cluster now has as ``outcome``; return those it lacks."""
        for d in remaining:
            if d.server in live:
                self._report(d, outcome, started=started, attempts=posts)
        return [d for d in remaining if d.server not in live]

    def _attempts(
        self, svm: str | None, servers: tuple[str, ...]
    ) -> AsyncIterable[stamina.Attempt]:
        """stamina's attempts for one unit of work, reporting each retry as an event."""
        policy = self.parent.options.retry
        attempts = stamina.retry_context(
            on=self._should_retry,
            attempts=policy.attempts,
            timeout=policy.timeout,
            wait_initial=policy.wait_initial,
            wait_max=policy.wait_max,
            wait_jitter=policy.wait_jitter,
        )

        def report(details: RetryDetails) -> None:
            exc = details.caused_by
            if isinstance(exc, OntapError):
                self.parent.emit(
                    Retrying(
                        cluster=self.cluster.name,
                        svm=svm,
                        servers=servers,
                        attempt=details.retry_num,
                        wait=details.wait_for,
                        error=ErrorInfo.from_exception(exc),
                    )
                )

        _retry_reporter.set(report)
        return attempts

    def _should_retry(self, exc: Exception) -> bool:
        """Retry transient failures, unless they have broken the cluster or the run is over."""
        if isinstance(exc, AuthError):
            self.broken = _Stopped(Outcome.FAILED, "auth_failed", ErrorInfo.from_exception(exc))
            return False
        if isinstance(exc, TransportError):
            self.transport_failures += 1
            if (
                self.transport_failures >= self.parent.options.breaker_threshold
                and self.broken is None
            ):
                self.broken = _Stopped(
                    Outcome.SKIPPED, "cluster_unreachable", ErrorInfo.from_exception(exc)
                )
                log.warning("cluster_unreachable", failures=self.transport_failures)
        elif isinstance(exc, OntapError):
            self.transport_failures = 0  # the cluster answered
        return is_retryable(exc) and self.broken is None

    def _run_stop(self) -> _Stopped:
        """How unstarted targets end when the run stops."""
        stop = self.parent.stop or "stopped"
        outcome = Outcome.CANCELLED if stop == "interrupted" else Outcome.SKIPPED
        return _Stopped(outcome, stop, None)

    def _report_rest(self, outcome: Outcome, reason: str, error: ErrorInfo | None) -> None:
        """Report every target not yet reported."""
        now = datetime.now(UTC)
        for d in list(self.unreported.values()):
            self._report(d, outcome, error=error, reason=reason, started=now)

    def _report(
        self,
        d: Decision,
        outcome: Outcome,
        *,
        error: ErrorInfo | None = None,
        reason: str | None = None,
        started: datetime | None = None,
        attempts: int = 0,
        carried: TargetResult | None = None,
    ) -> None:
        """Emit a target's one result, unless it already has one."""
        if self.unreported.pop(_key(d), None) is None:
            return
        if carried is not None:
            self.parent.emit(dataclasses.replace(carried, carried_over=True))
            return
        now = datetime.now(UTC)
        self.parent.emit(
            TargetResult(
                cluster=d.cluster,
                svm=d.svm,
                key_manager_uuid=d.key_manager_uuid,
                server=d.server,
                outcome=outcome,
                error=error,
                reason=reason,
                attempts=attempts,
                started_at=started or now,
                finished_at=now,
            )
        )


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; the first failure is raised as itself, not as a group."""
    try:
        async with asyncio.TaskGroup() as group:
            a = group.create_task(_wrap(first))
            b = group.create_task(_wrap(second))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return a.result(), b.result()


async def _wrap(awaitable: Awaitable[T]) -> T:
    """A coroutine for ``create_task`` from any awaitable."""
    return await awaitable


def _key(d: Decision) -> TargetKey:
    """The identity of a target across runs."""
    return (d.cluster, d.svm, d.server)
