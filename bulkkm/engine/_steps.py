"""One key manager's migration: its steps in order (add, verify, remove), every target once.

The rules, whatever the cluster answers:

- A step starts only once the one before ended well, and only while the cluster may take
  new requests (``halt``): a stop between steps leaves the rest to the cluster run, which
  reports them as the stop says (``skipped``, ``cancelled``), exactly as between batches.
- ``Batch``: sent as ``apply`` sends it. A batch that leaves a server neither added nor
  present ends the migration of its key manager: nothing is removed without its
  replacement (``replacement_failed``).
- ``Verify``: the servers' connectivity is read, with backoff, until every one is
  ``available`` on every node (9.13+) or available to the cluster (9.7 to 9.12), for up to
  ``verify_timeout``; with ``verify_keys`` the keys are then restored from each new server
  and every key must read ``restored`` on every node. One ``Verified`` event per
  verification. One that does not pass ends the migration of its key manager: its remaining
  targets are ``blocked`` (``replacement_unreachable``), its old servers kept. A verification
  the run stops before its end (Ctrl-C, a threshold, a window) ends as the stop ends targets
  (``cancelled``, ``skipped``), not ``failed``.
- ``Remove``: one DELETE, retried on transient refusals (65536600, 2621573). A DELETE whose
  fate is unknown (a lost answer, a 5xx) is settled by reading the server back before
  anything else is sent: gone is ``removed``. 65536843 is ``absent``. 65536700 is
  ``failed`` (``keys_only_on_this_server``) and no further removal happens on that key
  manager (``blocked``, same reason); any other failure ends it too (``removal_failed``).
  Other key managers are not affected.

Nothing here sends a request the host's gate does not admit; stops, retries and the report
are the host's (the cluster run), seen through ``StepHost``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final, Protocol, TypeVar

from bulkkm.engine._breaker import Stopped
from bulkkm.engine._options import Options
from bulkkm.engine._retrying import Predicate, Reporter, retrying
from bulkkm.errors import ApiError, ErrorCategory, OntapError
from bulkkm.events import ErrorInfo, Event, Outcome, Verified
from bulkkm.ontap import Connectivity, OntapClient, Removal
from bulkkm.plan import (
    Batch,
    Decision,
    KeyManagerPlan,
    Remove,
    Step,
    TargetId,
    Verify,
    removal_blocker,
)
from bulkkm.retry import KEYS_IN_USE, RetryOn, RetryPolicy
from bulkkm.state import OntapVersion

__all__ = ["KeyManagerSteps", "StepHost"]

T = TypeVar("T")

POLL_INITIAL: Final = 0.25
"""Seconds before the second read of a verification; doubled after each read."""
POLL_MAX: Final = 5.0
DONE: Final = frozenset({Outcome.ADDED, Outcome.PRESENT})


class StepHost(Protocol):
    """What a key manager's steps need of their cluster run."""

    @property
    def client(self) -> OntapClient:
        """The cluster's client."""

    @property
    def options(self) -> Options:
        """The run's options."""

    @property
    def policy(self) -> RetryPolicy:
        """The retry policy of one unit of work."""

    @property
    def wave(self) -> int | None:
        """The wave the cluster belongs to."""

    def halt(self) -> Stopped | None:
        """Why no new request may start on the cluster now, if one may not."""

    def on(self, retries: RetryOn) -> Predicate:
        """stamina's ``on=`` for one unit of work."""

    def reporter(self, svm: str | None, servers: tuple[str, ...]) -> Reporter:
        """Each retry of a unit as a ``Retrying`` event."""

    async def apply(self, batch: Batch) -> None:
        """Send one batch with retries; every target of it reported."""

    def outcome(self, target: TargetId) -> Outcome | None:
        """How a target ended, once reported."""

    def report(
        self,
        d: Decision,
        outcome: Outcome,
        *,
        error: ErrorInfo | None = None,
        reason: str | None = None,
        started: datetime | None = None,
        attempts: int = 0,
    ) -> None:
        """Report a target's one result (a target already reported is left alone)."""

    def emit(self, event: Event) -> None:
        """Hand an event to the run's subscribers."""


class _Ended(Exception):
    """The key manager's migration ends here: its remaining targets are blocked."""

    def __init__(self, reason: str, detail: str) -> None:
        """Why (the targets' reason) and the sentence an operator reads."""
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class KeyManagerSteps:
    """The ordered steps of one key manager, run one after another."""

    def __init__(
        self, host: StepHost, plan: KeyManagerPlan, version: OntapVersion, desired: frozenset[str]
    ) -> None:
        """``desired``: the servers the inventory wants on this key manager (restore sources)."""
        self.host = host
        self.plan = plan
        self.version = version
        self.desired = desired
        self.uuid = plan.key_manager_uuid

    async def run(self) -> None:
        """Each step in order until one fails or the cluster must stop.

        Where the cluster cannot run the verification asked for (``removal_blocker``: ONTAP
        too old), its retired servers are kept (``blocked`` by the plan) and no verification
        is attempted: it could only fail, and would be counted as a failed verification
        beside the removals' true reason.
        """
        steps = self.plan.steps
        options = self.host.options
        if removal_blocker(self.version, verify_keys=options.verify_keys) is not None:
            steps = tuple(step for step in steps if not isinstance(step, Verify))
        for index, step in enumerate(steps):
            if self.host.halt() is not None:
                return  # the cluster run reports what is left, as the stop says
            try:
                await self._step(step)
            except Stopped:
                return
            except _Ended as ended:
                self._block(steps[index + 1 :], ended.reason, ended.detail)
                return

    async def _step(self, step: Step) -> None:
        """Run one step; ``_Ended`` when the key manager must go no further."""
        match step:
            case Batch():
                await self.host.apply(step)
                if self.host.halt() is not None:
                    raise Stopped(Outcome.SKIPPED, "stopped", None)
                missing = [
                    d.server for d in step.decisions if self.host.outcome(d.target) not in DONE
                ]
                if missing:
                    raise _Ended(
                        "replacement_failed",
                        f"not done: {', '.join(missing)} could not be added",
                    )
            case Verify():
                await self._verify(step)
            case Remove():
                await self._remove(step.decision)

    def _block(self, steps: tuple[Step, ...], reason: str, detail: str) -> None:
        """Report every target of the steps not taken as blocked."""
        error = ErrorInfo(category=ErrorCategory.PRECONDITION, message=detail)
        now = datetime.now(UTC)
        for step in steps:
            decisions: tuple[Decision, ...] = ()
            if isinstance(step, Batch):
                decisions = step.decisions
            elif isinstance(step, Remove):
                decisions = (step.decision,)
            for d in decisions:
                self.host.report(d, Outcome.BLOCKED, error=error, reason=reason, started=now)

    async def _unit(
        self, work: Callable[[], Awaitable[T]], servers: tuple[str, ...], *, always: bool = False
    ) -> T:
        """One request with the run's retries; none starts once the cluster must halt.

        ``always``: the first attempt goes even when halting (a read-back that settles a write).
        """

        async def attempt(number: int) -> T:
            if (halt := self.host.halt()) is not None and not (always and number == 1):
                raise halt
            return await work()

        return await retrying(
            attempt,
            policy=self.host.policy,
            on=self.host.on(RetryOn()),
            report=self.host.reporter(self.plan.svm, servers),
        )

    # -- verification ---------------------------------------------------------------------

    async def _verify(self, step: Verify) -> None:
        """Verify the servers from every node; ``_Ended`` unless every check passed."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.host.options.verify_timeout
        seen = Connectivity(servers={})
        reason: str | None = None
        detail = ""
        try:
            seen = await self._reachable(step, deadline)
            if not seen.reachable:
                reason = "replacement_unreachable" if seen.unreachable else "verify_timeout"
                detail = _unreachable(seen, self.host.options.verify_timeout)
            elif self.host.options.verify_keys:
                detail = await self._keys_restored(step, seen, deadline) or ""
                reason = "keys_not_restored" if detail else None
        except OntapError as exc:
            reason, detail = "verify_failed", f"the verification could not read: {exc.message}"
        except Stopped as stop:
            self._verified(seen, started, stop.reason, stopped=stop.outcome)
            raise
        except asyncio.CancelledError:
            self._verified(seen, started, "interrupted", stopped=Outcome.CANCELLED)
            raise
        self._verified(seen, started, reason)
        if reason is not None:
            raise _Ended("replacement_unreachable", f"kept: {detail}")

    async def _reachable(self, step: Verify, deadline: float) -> Connectivity:
        """Read the connectivity until every server is reachable or the deadline passes."""
        loop = asyncio.get_running_loop()
        delay = POLL_INITIAL
        while True:
            seen = await self._unit(
                lambda: self.host.client.key_server_states(self.uuid, step.servers, self.version),
                step.servers,
            )
            left = deadline - loop.time()
            if seen.reachable or left <= 0:
                return seen
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)

    async def _keys_restored(self, step: Verify, seen: Connectivity, deadline: float) -> str | None:
        """Restore from each new server, then wait for every key restored on every node.

        Returns why the keys do not pass, or None when they do.
        """
        if not seen.nodes:
            return "the cluster named no node to read the keys of"
        for server in (s for s in step.servers if s in self.desired):
            restore = functools.partial(self.host.client.restore_keys, self.uuid, server)
            await self._unit(restore, (server,))
        loop = asyncio.get_running_loop()
        delay = POLL_INITIAL
        while True:
            pending: list[str] = []
            for name, node in seen.nodes:
                read = functools.partial(self.host.client.keys_restored, self.uuid, node)
                keys = await self._unit(read, step.servers)
                if not all(restored for _, restored in keys):
                    pending.append(name)
            left = deadline - loop.time()
            if not pending:
                return None
            if left <= 0:
                return f"keys not restored on {', '.join(pending)}"
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)

    def _verified(
        self,
        seen: Connectivity,
        started: float,
        reason: str | None,
        *,
        stopped: Outcome | None = None,
    ) -> None:
        """Emit the verification's one ``Verified`` event (``stopped``: the run ended it first)."""
        elapsed = asyncio.get_running_loop().time() - started
        self.host.emit(
            Verified(
                cluster=self.plan.cluster,
                svm=self.plan.svm,
                key_manager_uuid=self.uuid,
                servers={server: dict(nodes) for server, nodes in seen.servers.items()},
                passed=reason is None,
                duration_ms=round(elapsed * 1000),
                reason=reason,
                wave=self.host.wave,
                stopped=stopped,
            )
        )

    # -- removal --------------------------------------------------------------------------

    async def _remove(self, d: Decision) -> None:
        """DELETE one retired server; ``_Ended`` unless it ends removed or absent."""
        started = datetime.now(UTC)
        client = self.host.client
        retries = RetryOn()
        attempts = 0
        unknown: OntapError | None = None
        """The last DELETE's failure when it may have applied: read back before anything."""
        maybe = False
        """Whether any DELETE of this run may have applied (then 65536843 means ours)."""

        async def attempt(number: int) -> Removal:
            nonlocal attempts, unknown, maybe
            if (halt := self.host.halt()) is not None:
                raise halt
            if unknown is not None:
                if not await client.has_key_server(self.uuid, d.server):
                    return Removal.REMOVED
                unknown = None  # still there: that DELETE did not apply
            attempts += 1
            try:
                removal = await client.remove_key_server(self.uuid, d.server)
            except OntapError as exc:
                if exc.sent:
                    unknown, maybe = exc, True
                raise
            return Removal.REMOVED if maybe else removal

        try:
            try:
                removal = await retrying(
                    attempt,
                    policy=self.host.policy,
                    on=self.host.on(retries),
                    report=self.host.reporter(d.svm, (d.server,)),
                )
            except OntapError as exc:
                error = _error(exc, retries)
                if isinstance(exc, ApiError) and exc.code == KEYS_IN_USE:
                    self._report(
                        d, Outcome.FAILED, started, attempts, error, reason=KEYS_IN_USE_REASON
                    )
                    raise _Ended(
                        KEYS_IN_USE_REASON,
                        f"kept: {d.server} alone holds keys in use (65536700); "
                        "no further removal on this key manager",
                    ) from None
                if unknown is not None and await self._settled(d):
                    self._report(d, Outcome.REMOVED, started, attempts)
                    return
                self._report(d, Outcome.FAILED, started, attempts, self._unsettled(error, unknown))
                raise _Ended("removal_failed", f"kept: the removal of {d.server} failed") from None
            except Stopped as stop:
                if unknown is None:
                    self._report(d, stop.outcome, started, attempts, stop.error, reason=stop.reason)
                elif await self._settled(d, once=True):
                    self._report(d, Outcome.REMOVED, started, attempts)
                else:
                    info = ErrorInfo.from_exception(unknown)
                    failed = self._unsettled(info, unknown)
                    self._report(d, Outcome.FAILED, started, attempts, failed, reason=stop.reason)
                raise
        except asyncio.CancelledError:
            self._report(d, Outcome.CANCELLED, started, attempts, reason="interrupted")
            raise
        self._report(
            d, Outcome.REMOVED if removal is Removal.REMOVED else Outcome.ABSENT, started, attempts
        )

    async def _settled(self, d: Decision, *, once: bool = False) -> bool:
        """Whether a DELETE of unknown fate applied (the server is gone), read back.

        False when the server is still there or it cannot be read. ``once``: one read, sent
        even while stopping (it writes nothing and settles a write already sent).
        """
        if self.host.halt() is not None:
            once = True
        try:
            if once:
                present = await self.host.client.has_key_server(self.uuid, d.server)
            else:
                present = await self._unit(
                    lambda: self.host.client.has_key_server(self.uuid, d.server),
                    (d.server,),
                    always=True,
                )
        except (OntapError, Stopped):
            return False
        return not present

    @staticmethod
    def _unsettled(error: ErrorInfo | None, unknown: OntapError | None) -> ErrorInfo | None:
        """The error of a removal whose last DELETE may have applied and was not read back."""
        if unknown is None or error is None:
            return error
        message = f"{error.message}; the removal may have applied and was not read back"
        return dataclasses.replace(error, message=message)

    def _report(
        self,
        d: Decision,
        outcome: Outcome,
        started: datetime,
        attempts: int,
        error: ErrorInfo | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        """Report the removal's target."""
        self.host.report(d, outcome, error=error, reason=reason, started=started, attempts=attempts)


KEYS_IN_USE_REASON: Final = "keys_only_on_this_server"


def _error(exc: OntapError, retries: RetryOn) -> ErrorInfo:
    """The error a failed unit leaves in the report, as the retry policy sees it."""
    info = ErrorInfo.from_exception(exc)
    category = retries.category(exc)
    return info if category is info.category else dataclasses.replace(info, category=category)


def _unreachable(seen: Connectivity, timeout: float) -> str:
    """Which servers are not reachable from which nodes, in one sentence."""
    parts = []
    for server, nodes in seen.servers.items():
        bad = [f"{node} {state}" for node, state in nodes.items() if state != "available"]
        if bad or not nodes:
            parts.append(f"{server} ({', '.join(bad) or 'no node state'})")
    return f"not reachable from every node within {timeout:g} s: {'; '.join(parts)}"
