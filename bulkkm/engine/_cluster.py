"""One cluster in a run: discover, plan, apply.

Within a cluster, up to ``concurrency`` batch workers send the POSTs; every request passes
the cluster's gate (semaphore, then rate limiter), held for that request only, never across
a backoff sleep. Every target ends with exactly one ``TargetResult``: a ``ClusterRun``
keeps the targets it has not reported yet and, whatever happens (a stop, a broken cluster,
a closing window, cancellation), reports each of them once before it returns.

Writes of unknown fate: once a POST has left, any failure that does not prove nothing was
applied (the client marks it ``sent``) is settled by reading the key manager's servers back
before anything else is sent to it; a server found there is ``added``. When the batch ends
(retries spent, a permanent error, a stop) with such a write unsettled, it is read back once
more; a target whose write may have applied and could not be read back ends ``failed``.

Stops: once the run stops (Ctrl-C, a threshold) or the cluster's window closes, no new
request starts: no batch, no retry, no discovery attempt. Two kinds of request still may,
because they finish work already sent and write nothing: the polls of a job the cluster
accepted, and the one read-back that settles a write of unknown fate.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import random
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

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
    Outcome,
    Retrying,
    TargetResult,
)
from bulkkm.inventory import Cluster, DesiredServer, SelectorKind
from bulkkm.ontap import OntapClient
from bulkkm.plan import Action, Batch, Decision, batches, plan_cluster
from bulkkm.report import TargetKey
from bulkkm.retry import ALREADY_CONFIGURED, KMIP_CRYPTSOFT, KMIP_CRYPTSOFT_ATTEMPTS, is_retryable
from bulkkm.state import ClusterState

if TYPE_CHECKING:
    from bulkkm.engine._run import Run

__all__ = ["ClusterRun"]

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")
log = structlog.get_logger("bulkkm.engine")


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


class _Gate:
    """A cluster's admission for one request: its semaphore, then its rate limiter."""

    __slots__ = ("_limiter", "_semaphore")

    def __init__(self, cluster: Cluster) -> None:
        """Sized from the cluster's limits."""
        self._semaphore = asyncio.Semaphore(cluster.limits.concurrency)
        rate = cluster.limits.rate
        self._limiter = AsyncLimiter(rate, 1.0) if rate else None

    def __call__(self) -> AbstractAsyncContextManager[None]:
        """A slot for the length of one request (the bare semaphore when there is no rate)."""
        return self._semaphore if self._limiter is None else self._limited()

    @contextlib.asynccontextmanager
    async def _limited(self) -> AsyncIterator[None]:
        """The semaphore, then the rate limiter."""
        async with self._semaphore:
            assert self._limiter is not None
            await self._limiter.acquire()
            yield


@dataclasses.dataclass(slots=True, kw_only=True)
class _Sending:
    """Where one batch stands across its attempts."""

    remaining: list[Decision]
    """Targets of the batch not yet reported."""
    started: datetime
    posts: int = 0
    unknown: OntapError | None = None
    """The failure of the last POST when its fate is unknown: read back before anything."""
    cryptsoft: int = 0
    together: bool = True
    """Whether the remaining servers still go out in one POST."""


class ClusterRun:
    """One cluster: discover, plan, apply; every target reported exactly once."""

    def __init__(self, run: Run, cluster: Cluster) -> None:
        """Prepare the cluster's work; nothing is sent yet."""
        self.parent = run
        self.cluster = cluster
        self.client: OntapClient  # made in run(), with the cluster's own session
        self.wave = run.wave
        self.unreported: dict[TargetKey, Decision] = {}
        self.transport_failures = 0
        self.broken: _Stopped | None = None
        window = cluster.window if run.options.windows else None
        self.closes = window.closes_at(run.options.clock()) if window else None
        """When the cluster's maintenance window closes: no request starts after it."""

    async def run(self) -> None:
        """The whole life of the cluster in this run, over connections of its own.

        A session per cluster, closed when the cluster is done: a run-wide pool would keep
        the connections of finished clusters open, and every TLS connection holds a few
        hundred KiB (asyncio's 256 KiB read buffer, OpenSSL's state). Connections to
        different clusters are never shared anyway.
        """
        connector = aiohttp.TCPConnector(limit=self.cluster.limits.concurrency)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            self.client = OntapClient(
                session,
                self.cluster,
                gate=_Gate(self.cluster),
                read_only=self.parent.options.read_only,
            )
            await self._run()

    async def _run(self) -> None:
        """Discover, plan, apply; every target reported once."""
        try:
            state = await self._discover()
        except _Stopped as halted:  # stopped between discovery attempts
            self.parent.skip_cluster(self.cluster, halted.reason, self.wave)
            return
        except OntapError as exc:
            self.parent.emit(
                ClusterResult(
                    cluster=self.cluster.name,
                    outcome=Outcome.FAILED,
                    error=ErrorInfo.from_exception(exc),
                    reason="discovery_failed",
                    wave=self.wave,
                )
            )
            self.parent.settle_cluster(0)
            return
        if (first := self.parent.claim_cluster(state.uuid, self.cluster.name)) is not None:
            self._refuse_duplicate(first, state)
            return
        decisions = plan_cluster(self.cluster, state)
        drifted: list[Decision] = []
        if self.parent.options.approved is not None:
            decisions, drifted = self._approved(decisions, state)
        self.unreported = {_key(d): d for d in (*decisions, *drifted)}
        self.parent.settle_cluster(len(self.unreported))
        self.parent.emit(
            ClusterDiscovered(
                cluster=self.cluster.name,
                version=str(state.version),
                targets=len(self.unreported),
                key_managers=state.key_managers,
                decisions=decisions,
            )
        )
        now = datetime.now(UTC)
        for d in drifted:
            self._report(d, Outcome.SKIPPED, reason="drifted", started=now)
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
                stop = self._halt() or self._run_stop()
                self._report_rest(stop.outcome, stop.reason, stop.error)

    def _refuse_duplicate(self, first: str, state: ClusterState) -> None:
        """The cluster is one the run already works on under another inventory name: refuse."""
        message = (
            f"the same cluster (uuid {state.uuid!r}) as inventory cluster {first!r}, "
            "reached at another address: nothing sent to it under this name"
        )
        self.parent.emit(
            ClusterResult(
                cluster=self.cluster.name,
                outcome=Outcome.FAILED,
                error=ErrorInfo(category=ErrorCategory.PRECONDITION, message=message),
                reason="duplicate_cluster",
                wave=self.wave,
            )
        )
        self.parent.settle_cluster(0)

    def _approved(
        self, decisions: tuple[Decision, ...], state: ClusterState
    ) -> tuple[tuple[Decision, ...], list[Decision]]:
        """The approved plan's additions on this cluster: (still valid, drifted).

        Only additions the plan approved are kept; a key manager whose servers are no longer
        those the plan saw is not touched: its additions are drifted.
        """
        approved = self.parent.options.approved
        assert approved is not None
        live = {km.uuid: km for km in state.key_managers}
        current = {(d.key_manager_uuid, d.server): d for d in decisions}
        kept: list[Decision] = []
        drifted: list[Decision] = []
        cluster = self.cluster.name
        for uuid, km in approved.clusters.get(cluster, {}).items():
            same = uuid in live and tuple(sorted(live[uuid].servers)) == km.fingerprint
            for server in km.add:
                d = current.get((uuid, server))
                if same and d is not None and d.action is Action.ADD:
                    kept.append(d)
                else:
                    drifted.append(
                        Decision(
                            cluster=cluster,
                            svm=km.svm,
                            key_manager_uuid=uuid,
                            desired=DesiredServer(server=server),
                            action=Action.ADD,
                        )
                    )
        return tuple(kept), drifted

    def _halt(self) -> _Stopped | None:
        """Why no new request may start on this cluster now, if one may not."""
        if self.broken is not None:
            return self.broken
        # The flag as well as ``stop``: the run sets ``stop`` only once its loop wakes.
        if self.parent.stop is not None or self.parent.control.interrupted.is_set():
            return self._run_stop()
        if self.closes is not None and self.parent.options.clock() >= self.closes:
            return _Stopped(Outcome.SKIPPED, "outside_window", None)
        return None

    async def _discover(self) -> ClusterState:
        """The cluster's version and key managers (and SVM names when an explicit one is absent)."""
        async for attempt in self._attempts(None, ()):
            with attempt:
                if (halt := self._halt()) is not None:
                    raise halt
                (version, uuid), key_managers = await _together(
                    self.client.identity(), self.client.key_managers()
                )
                state = ClusterState(version=version, key_managers=key_managers, uuid=uuid)
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
            if resume is not None and (done := resume.carried(d)) is not None:
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
        """Send batches until none is left, the cluster must halt or the run stops."""
        while pending and self._halt() is None:
            await self._apply(pending.pop())

    async def _apply(self, batch: Batch) -> None:
        """POST one batch with retries; a write of unknown fate is read back before anything."""
        st = _Sending(remaining=list(batch.decisions), started=datetime.now(UTC))
        try:
            try:
                # Most batches succeed at once; stamina's loop (a retry iterator per use, and
                # the garbage it leaves) is set up only after a failure worth another try.
                await self._attempt(batch, st)
            except OntapError as exc:
                if not self._should_retry(exc) or self.parent.options.retry.attempts < 2:
                    raise
                await self._retry(batch, st, exc)
        except OntapError as exc:
            await self._conclude(batch, st, Outcome.FAILED, ErrorInfo.from_exception(exc), None)
        except _Stopped as stop:
            await self._conclude(batch, st, stop.outcome, stop.error, stop.reason)
        except asyncio.CancelledError:
            # No read-back once cancelled: a write of unknown fate is `cancelled`, not skipped.
            self._settle(st, Outcome.CANCELLED, reason="interrupted")
            raise

    async def _conclude(
        self,
        batch: Batch,
        st: _Sending,
        outcome: Outcome,
        error: ErrorInfo | None,
        reason: str | None,
    ) -> None:
        """End a batch that will not be sent again: settle an unknown write, then the rest.

        A write whose fate is unknown is read back (unless the cluster is broken: unreachable,
        or refusing our credentials); what is found is ``added``. Targets it may have applied
        that could not be read back are ``failed``, never skipped: their fate is unknown, and
        the error says so.
        """
        why = None
        if st.unknown is not None and self.broken is None:
            why = await self._read_back_finally(batch, st)
        if (unknown := st.unknown) is not None:
            message = f"{unknown.message}; the write may have applied and was not read back"
            info = ErrorInfo.from_exception(unknown)
            info = dataclasses.replace(info, message=f"{message} ({why})" if why else message)
            self._settle(st, Outcome.FAILED, error=info, reason=reason)
        else:
            self._settle(st, outcome, error=error, reason=reason)

    async def _read_back_finally(self, batch: Batch, st: _Sending) -> str | None:
        """Settle a write of unknown fate before the batch ends; why it could not be, if not.

        A GET writes nothing, so it is retried like any request, but only while the cluster
        may take new requests: once stopping, the one read-back is all that is sent.
        """
        uuid = batch.key_manager_uuid
        try:
            if self._halt() is not None:
                await self._read_back(uuid, st)
                return None
            servers = tuple(d.server for d in st.remaining)
            async for attempt in self._attempts(batch.svm, servers):
                with attempt:
                    if attempt.num > 1 and (halt := self._halt()) is not None:
                        raise halt
                    await self._read_back(uuid, st)
        except OntapError as exc:
            return exc.message
        except _Stopped as stop:
            return f"stopped before reading back: {stop.reason}"
        return None

    async def _read_back(self, uuid: str, st: _Sending) -> None:
        """Settle a write of unknown fate: the servers the key manager has now are ``added``."""
        self._settle(st, Outcome.ADDED, only=await self.client.key_server_names(uuid))
        st.unknown = None

    async def _retry(self, batch: Batch, st: _Sending, first: OntapError) -> None:
        """The attempts after a first one failed: its backoff here, then stamina's loop."""
        policy = self.parent.options.retry
        servers = tuple(d.server for d in st.remaining)
        wait = min(policy.wait_max, policy.wait_initial + random.uniform(0, policy.wait_jitter))
        self.parent.emit(
            Retrying(
                cluster=self.cluster.name,
                svm=batch.svm,
                servers=servers,
                attempt=1,
                wait=wait,
                error=ErrorInfo.from_exception(first),
            )
        )
        await asyncio.sleep(wait)
        elapsed = (datetime.now(UTC) - st.started).total_seconds()
        async for attempt in self._attempts(batch.svm, servers, after_first=elapsed):
            with attempt:
                await self._attempt(batch, st)

    async def _attempt(self, batch: Batch, st: _Sending) -> None:
        """One attempt: read back if the last POST's fate is unknown, then POST what remains."""
        if (halt := self._halt()) is not None:
            raise halt
        uuid = batch.key_manager_uuid
        if st.unknown is not None:
            await self._read_back(uuid, st)
        while st.remaining:
            chunk = st.remaining if st.together else st.remaining[:1]
            st.posts += 1
            try:
                await self.client.add_key_servers(uuid, tuple(d.desired for d in chunk))
            except OntapError as exc:
                if exc.sent:  # it may have applied: nothing more is sent before a read-back
                    st.unknown = exc
                    raise
                if not isinstance(exc, ApiError) or exc.code != ALREADY_CONFIGURED:
                    if isinstance(exc, ApiError) and exc.code == KMIP_CRYPTSOFT:
                        st.cryptsoft += 1
                        if st.cryptsoft >= KMIP_CRYPTSOFT_ATTEMPTS:
                            exc.category = ErrorCategory.TLS
                    raise
                await self._already_configured(uuid, st, chunk)
                continue
            self._settle(st, Outcome.ADDED, only=frozenset(d.server for d in chunk))

    async def _already_configured(self, uuid: str, st: _Sending, chunk: list[Decision]) -> None:
        """ONTAP says a server of the chunk is there already (65536870): settle what is."""
        if len(chunk) == 1:
            self._settle(st, Outcome.PRESENT, only=frozenset({chunk[0].server}))
            return
        before = len(st.remaining)
        self._settle(st, Outcome.PRESENT, only=await self.client.key_server_names(uuid))
        if len(st.remaining) == before:
            st.together = False  # refused, yet none of it is listed: one server per POST

    def _settle(
        self,
        st: _Sending,
        outcome: Outcome,
        *,
        only: frozenset[str] | None = None,
        error: ErrorInfo | None = None,
        reason: str | None = None,
    ) -> None:
        """Report the remaining targets (those whose server is in ``only``) as ``outcome``."""
        done = [d for d in st.remaining if only is None or d.server in only]
        for d in done:
            self._report(
                d, outcome, error=error, reason=reason, started=st.started, attempts=st.posts
            )
        st.remaining = [d for d in st.remaining if only is not None and d.server not in only]

    def _attempts(
        self, svm: str | None, servers: tuple[str, ...], *, after_first: float | None = None
    ) -> AsyncIterable[stamina.Attempt]:
        """stamina's attempts for one unit of work, reporting each retry as an event.

        ``after_first``: the seconds a first attempt (and its backoff) already took; the
        loop then has one attempt fewer, the time left, and a backoff that goes on growing.
        """
        policy = self.parent.options.retry
        done = 0 if after_first is None else 1
        attempts = stamina.retry_context(
            on=self._should_retry,
            attempts=policy.attempts - done,
            timeout=max(policy.timeout - (after_first or 0.0), 0.001),
            wait_initial=policy.wait_initial * 2**done,
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
                        attempt=details.retry_num + done,
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
        stop = self.parent.stop or "interrupted"
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
            self.parent.emit(dataclasses.replace(carried, carried_over=True, wave=self.wave))
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
                wave=self.wave,
            )
        )


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; both finish even if one fails (so no request is abandoned
    mid-flight with its concurrency slot freed), then the first failure is raised."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b


def _key(d: Decision) -> TargetKey:
    """The identity of a target across runs."""
    return (d.cluster, d.svm, d.server)
