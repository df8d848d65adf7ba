"""One cluster in a run: discover, plan, run its batches or steps; every target reported once.

Within a cluster, up to ``concurrency`` workers send the batches (``_batch``), or, for
``migrate``, run each key manager's steps in order (``_steps``: add, verify, remove); every
request passes the cluster's gate (``_gate``), held for that request only; every unit of
work is retried through ``_retrying`` under the run's policy. Every target ends with
exactly one ``TargetResult``: a ``ClusterRun`` keeps the targets it has not reported yet
and, whatever happens (a stop, a broken cluster, a closing window, cancellation), reports
each of them once before it returns.

Writes of unknown fate are settled as ``_batch`` says; when a batch ends with one unsettled
(retries spent, a permanent error, a stop), it is read back once more here, unless the
cluster is broken (unreachable, or refusing our credentials).

Stops: once the run stops (Ctrl-C, a threshold) or the cluster's window closes, no new
request starts: no batch, no retry, no discovery attempt. Two kinds of request still may,
because they finish work already sent and write nothing: the polls of a job the cluster
accepted, and the one read-back that settles a write of unknown fate.

A ``ClusterRun`` sees its run through ``RunContext``: the options, the stop state, the
event stream and the run-wide bookkeeping of clusters, nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from bulkkm.engine._batch import BatchSend
from bulkkm.engine._breaker import Breaker, Stopped
from bulkkm.engine._gate import Gate
from bulkkm.engine._options import Command, Options
from bulkkm.engine._retrying import Predicate, Reporter, retrying
from bulkkm.engine._steps import KeyManagerSteps
from bulkkm.errors import ErrorCategory, OntapError
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    Retrying,
    TargetResult,
)
from bulkkm.inventory import Cluster, SelectorKind
from bulkkm.ontap import OntapClient, TlsContexts
from bulkkm.plan import (
    Action,
    Batch,
    Decision,
    Operation,
    TargetId,
    approved_only,
    batches,
    keep_retired,
    key_manager_plans,
    plan_cluster,
    removal_blocker,
)
from bulkkm.retry import RetryOn
from bulkkm.state import ClusterState

__all__ = ["ClusterRun", "RunContext"]

A = TypeVar("A")
B = TypeVar("B")


class RunContext(Protocol):
    """What a cluster sees of its run (``Run`` is one)."""

    @property
    def options(self) -> Options:
        """How the run behaves."""

    @property
    def wave(self) -> int | None:
        """The wave being rolled out (None without waves)."""

    @property
    def stop(self) -> str | None:
        """Why the run stopped starting new work, once it has."""

    @property
    def interrupted(self) -> bool:
        """Whether the operator interrupted the run (before ``stop`` says so)."""

    @property
    def tls(self) -> TlsContexts:
        """The run's TLS contexts."""

    def emit(self, event: Event) -> None:
        """Hand an event to the run's subscribers."""

    def claim_cluster(self, uuid: str | None, name: str) -> str | None:
        """Claim a discovered cluster; the inventory cluster that claimed it first, if another."""

    def settle_cluster(self, targets: int, *, cluster: str | None = None) -> None:
        """Cluster ``cluster`` is discovered (with ``targets``) or given up on."""

    def skip_cluster(self, cluster: Cluster, reason: str, wave: int | None) -> None:
        """The cluster is not worked on: one ``cluster`` line, its targets unknown."""


class ClusterRun:
    """One cluster: discover, plan, apply; every target reported exactly once."""

    def __init__(self, run: RunContext, cluster: Cluster) -> None:
        """Prepare the cluster's work; nothing is sent yet."""
        self.parent = run
        self.cluster = cluster
        self.client: OntapClient  # made in run(), over the cluster's own session
        self.wave = run.wave
        self.policy = run.options.retry
        self.unreported: dict[TargetId, Decision] = {}
        self.outcomes: dict[TargetId, Outcome] = {}
        """How each target reported so far ended (a migration's steps go on from them)."""
        self.actions = run.options.command.retires
        """Whether target lines say their action (a run that plans removals)."""
        self.breaker = Breaker(run.options.breaker_threshold)
        window = cluster.window if run.options.windows else None
        self.closes = window.closes_at(run.options.clock()) if window else None
        """When the cluster's maintenance window closes: no request starts after it."""

    @property
    def options(self) -> Options:
        """The run's options."""
        return self.parent.options

    def emit(self, event: Event) -> None:
        """Hand an event to the run's subscribers."""
        self.parent.emit(event)

    def outcome(self, target: TargetId) -> Outcome | None:
        """How a target ended, once reported."""
        return self.outcomes.get(target)

    async def run(self) -> None:
        """The whole life of the cluster in this run, over connections of its own."""
        async with OntapClient.connect(
            self.cluster,
            gate=Gate(self.cluster.limits),
            read_only=self.parent.options.read_only,
            tls=self.parent.tls,
        ) as self.client:
            await self._run()

    async def _run(self) -> None:
        """Discover, plan, apply; every target reported once."""
        retries = RetryOn()
        try:
            state = await retrying(
                self._discover,
                policy=self.policy,
                on=self.on(retries),
                report=self._reporter(None, None),
            )
        except Stopped as halted:  # stopped between discovery attempts
            self.parent.skip_cluster(self.cluster, halted.reason, self.wave)
            return
        except OntapError as exc:
            self.parent.emit(
                ClusterResult(
                    cluster=self.cluster.name,
                    outcome=Outcome.FAILED,
                    error=_error(exc, retries),
                    reason="discovery_failed",
                    wave=self.wave,
                )
            )
            self.parent.settle_cluster(0, cluster=self.cluster.name)
            return
        if (first := self.parent.claim_cluster(state.uuid, self.cluster.name)) is not None:
            self._refuse_duplicate(first, state)
            return
        decisions = self._plan(state)
        drifted: tuple[Decision, ...] = ()
        if (approved := self.parent.options.approved) is not None:
            migrate = self.parent.options.command is Command.MIGRATE
            planned, drifted = approved_only(
                self.cluster.name, decisions, state, approved, removals=migrate
            )
            decisions = planned + self._carried_beside(decisions, (*planned, *drifted))
        self.unreported = {d.target: d for d in (*decisions, *drifted)}
        self.parent.settle_cluster(len(self.unreported), cluster=self.cluster.name)
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
            self.report(d, Outcome.SKIPPED, reason="drifted", started=now)
        try:
            todo = self._settle_without_writes(decisions)
            pending = self._work(todo, decisions, state)
            pending.reverse()  # pop() from the end keeps the plan's order
            workers = min(self.cluster.limits.concurrency, len(pending))
            async with asyncio.TaskGroup() as group:
                for _ in range(workers):
                    group.create_task(self._worker(pending))
        except asyncio.CancelledError:
            self._report_rest(Outcome.CANCELLED, "interrupted", None)
            raise
        finally:
            if self.unreported:  # a stop left batches unstarted
                stop = self.halt() or self._run_stop()
                self._report_rest(stop.outcome, stop.reason, stop.error)

    def _plan(self, state: ClusterState) -> tuple[Decision, ...]:
        """Every target's decision; retired servers too where the command retires them.

        ``migrate`` and ``plan`` keep every retired server where its removal could not be
        verified first (ONTAP too old for the verification asked for).
        """
        command = self.parent.options.command
        if not command.retires:
            return plan_cluster(self.cluster, state)
        if command in (Command.MIGRATE, Command.PLAN):
            verify_keys = self.parent.options.verify_keys
            if blocker := removal_blocker(state.version, verify_keys=verify_keys):
                return keep_retired(self.cluster, state, *blocker)
        return plan_cluster(self.cluster, state, retire=True)

    def _work(
        self, todo: list[Decision], decisions: tuple[Decision, ...], state: ClusterState
    ) -> list[Batch | KeyManagerSteps]:
        """The units the workers take: batches (``apply``) or key managers' steps (``migrate``)."""
        if self.parent.options.command is not Command.MIGRATE:
            return list(batches(todo, state.version))
        desired: dict[str | None, set[str]] = {}
        for d in decisions:
            if d.operation is Operation.ADD:
                desired.setdefault(d.key_manager_uuid, set()).add(d.server)
        return [
            KeyManagerSteps(
                self,
                plan,
                state.version,
                frozenset(desired.get(plan.key_manager_uuid, ())),
            )
            for plan in key_manager_plans(todo, state, migrate=True)
        ]

    async def _discover(self, _attempt: int) -> ClusterState:
        """The cluster's version and key managers (and SVM names when an explicit one is absent)."""
        if (halt := self.halt()) is not None:
            raise halt
        (version, uuid), key_managers = await _together(
            self.client.identity(), self.client.key_managers()
        )
        state = ClusterState(version=version, key_managers=key_managers, uuid=uuid)
        named = {s.pattern for s in self.cluster.svms if s.kind is SelectorKind.NAME}
        if named - {km.svm for km in state.key_managers}:
            state = dataclasses.replace(state, svms=await self.client.svm_names())
        return state

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
        self.parent.settle_cluster(0, cluster=self.cluster.name)

    def _carried_beside(
        self, decisions: tuple[Decision, ...], planned: tuple[Decision, ...]
    ) -> tuple[Decision, ...]:
        """With a plan and ``--resume``: the targets the plan leaves alone that the resumed
        report shows done and the cluster confirms (an earlier run added them), so that
        their lines are carried and the newest report of a chain still holds every target's
        last outcome. Nothing is sent for them: done, they need no write."""
        resume = self.parent.options.resume
        if resume is None:
            return ()
        kept = {d.target for d in planned}
        return tuple(d for d in decisions if d.target not in kept and resume.carried(d))

    def _settle_without_writes(self, decisions: tuple[Decision, ...]) -> list[Decision]:
        """Report what needs no write (present, blocked, resumed, read-only); return the rest."""
        now = datetime.now(UTC)
        resume = self.parent.options.resume
        todo: list[Decision] = []
        for d in decisions:
            if resume is not None and (done := resume.carried(d)) is not None:
                self.report(d, done.outcome, carried=done)
            elif d.action is Action.PRESENT:
                self.report(d, Outcome.PRESENT, started=now)
            elif d.action is Action.ABSENT:
                self.report(d, Outcome.ABSENT, started=now)
            elif d.action is Action.BLOCKED:
                error = ErrorInfo(category=ErrorCategory.PRECONDITION, message=d.detail or "")
                self.report(d, Outcome.BLOCKED, error=error, reason=d.reason, started=now)
            elif self.parent.options.read_only:
                would = Outcome.WOULD_REMOVE if d.action is Action.REMOVE else Outcome.WOULD_ADD
                self.report(d, would, started=now)
            else:
                todo.append(d)
        return todo

    async def _worker(self, pending: list[Batch | KeyManagerSteps]) -> None:
        """Take units until none is left, the cluster must halt or the run stops."""
        while pending and self.halt() is None:
            unit = pending.pop()
            if isinstance(unit, Batch):
                await self.apply(unit)
            else:
                await unit.run()

    async def apply(self, batch: Batch) -> None:
        """One batch with retries; it ends with every target reported."""
        send = BatchSend(batch, self.client, self.report)
        retries = RetryOn()
        error: ErrorInfo | None
        try:
            try:
                await retrying(
                    lambda _: self._attempt(send),
                    policy=self.policy,
                    on=self.on(retries),
                    report=self._reporter(batch.svm, send),
                )
            except OntapError as exc:
                outcome, error, reason = Outcome.FAILED, _error(exc, retries), None
            except Stopped as stop:
                outcome, error, reason = stop.outcome, stop.error, stop.reason
            else:
                return
            # A write of unknown fate is read back before the batch ends (unless the
            # cluster is broken: unreachable, or refusing our credentials).
            why = None
            if send.unknown is not None and self.breaker.broken is None:
                why = await self._read_back_finally(send)
            send.finish(outcome, error=error, reason=reason, why=why)
        except asyncio.CancelledError:
            # No read-back once cancelled: a write of unknown fate is `cancelled`, not skipped.
            send.settle(Outcome.CANCELLED, reason="interrupted")
            raise

    async def _attempt(self, send: BatchSend) -> None:
        """One attempt of a batch, unless no request may start now."""
        if (halt := self.halt()) is not None:
            raise halt
        await send.attempt()

    async def _read_back_finally(self, send: BatchSend) -> str | None:
        """Settle a write of unknown fate before the batch ends; why it could not be, if not.

        A GET writes nothing, so it is retried like any request, but only while the cluster
        may take new requests: once stopping, the one read-back is all that is sent.
        """

        async def read_back(attempt: int) -> None:
            """One read-back; a retry only while requests may start."""
            if attempt > 1 and (halt := self.halt()) is not None:
                raise halt
            await send.read_back()

        try:
            if self.halt() is not None:
                await send.read_back()
            else:
                await retrying(
                    read_back,
                    policy=self.policy,
                    on=self.on(RetryOn()),
                    report=self._reporter(send.batch.svm, send),
                )
        except OntapError as exc:
            return exc.message
        except Stopped as stop:
            return f"stopped before reading back: {stop.reason}"
        return None

    def halt(self) -> Stopped | None:
        """Why no new request may start on this cluster now, if one may not."""
        if (broken := self.breaker.broken) is not None:
            return broken
        # The flag as well as ``stop``: the run sets ``stop`` only once its loop wakes.
        if self.parent.stop is not None or self.parent.interrupted:
            return self._run_stop()
        if self.closes is not None and self.parent.options.clock() >= self.closes:
            return Stopped(Outcome.SKIPPED, "outside_window", None)
        return None

    def on(self, retries: RetryOn) -> Predicate:
        """stamina's ``on=`` for one unit: the retry policy's verdict, unless the cluster broke."""

        def on(exc: Exception) -> bool | float:
            """Count the failure against the cluster, then ask the policy."""
            self.breaker.record(exc)
            verdict = retries(exc)
            return False if self.breaker.broken is not None else verdict

        return on

    def reporter(self, svm: str | None, servers: tuple[str, ...]) -> Reporter:
        """Each retry of a unit about ``servers`` as a ``Retrying`` event."""
        return self._reporter(svm, servers)

    def _reporter(self, svm: str | None, send: BatchSend | tuple[str, ...] | None) -> Reporter:
        """Each retry of a unit as a ``Retrying`` event (a batch's servers as they are then)."""

        def report(attempt: int, wait: float, exc: OntapError) -> None:
            """Emit one retry."""
            self.parent.emit(
                Retrying(
                    cluster=self.cluster.name,
                    svm=svm,
                    servers=send.servers if isinstance(send, BatchSend) else send or (),
                    attempt=attempt,
                    wait=wait,
                    error=ErrorInfo.from_exception(exc),
                )
            )

        return report

    def _run_stop(self) -> Stopped:
        """How unstarted targets end when the run stops."""
        stop = self.parent.stop or "interrupted"
        outcome = Outcome.CANCELLED if stop == "interrupted" else Outcome.SKIPPED
        return Stopped(outcome, stop, None)

    def _report_rest(self, outcome: Outcome, reason: str, error: ErrorInfo | None) -> None:
        """Report every target not yet reported."""
        now = datetime.now(UTC)
        for d in list(self.unreported.values()):
            self.report(d, outcome, error=error, reason=reason, started=now)

    def report(
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
        if self.unreported.pop(d.target, None) is None:
            return
        self.outcomes[d.target] = outcome
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
                action=d.operation if self.actions else None,
            )
        )


def _error(exc: OntapError, retries: RetryOn) -> ErrorInfo:
    """The error a failed unit of work leaves in the report, as the retry policy sees it."""
    info = ErrorInfo.from_exception(exc)
    category = retries.category(exc)
    return info if category is info.category else dataclasses.replace(info, category=category)


async def _together(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Await both at once; both finish even if one fails (so no request is abandoned
    mid-flight with its concurrency slot freed), then the first failure is raised."""
    a, b = await asyncio.gather(first, second, return_exceptions=True)
    if isinstance(a, BaseException):
        raise a
    if isinstance(b, BaseException):
        raise b
    return a, b
