"""The batch state machine, driven by a fake client: what each answer does to a batch."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pytest

from bulkkm.engine._batch import BatchSend
from bulkkm.errors import ApiError, ErrorCategory, RequestTimeout
from bulkkm.events import ErrorInfo, Outcome
from bulkkm.inventory import DesiredServer
from bulkkm.plan import Action, Batch, Decision
from bulkkm.retry import ALREADY_CONFIGURED, classify

UUID = "km-1"
A, B = "a.example.com:5696", "b.example.com:5696"


@dataclasses.dataclass(frozen=True)
class AppliedThen:
    """A scripted answer: the POST applied, then failed with ``exc``."""

    exc: Exception


class FakeKeyManager:
    """One key manager: answers POSTs from a script, lists what was applied."""

    def __init__(
        self, *answers: Exception | AppliedThen | None, listed: frozenset[str] = frozenset()
    ) -> None:
        """Each POST takes the next answer (None: applied, 201); reads list ``listed``."""
        self.answers = list(answers)
        self.listed = set(listed)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    async def add_key_servers(self, uuid: str, servers: tuple[DesiredServer, ...]) -> None:
        """A POST: apply, or fail as scripted (a failure marked ``sent`` may have applied)."""
        names = tuple(s.server for s in servers)
        self.calls.append(("POST", names))
        answer = self.answers.pop(0) if self.answers else None
        if answer is None or isinstance(answer, AppliedThen):
            self.listed.update(names)
        if isinstance(answer, AppliedThen):
            raise answer.exc
        if answer is not None:
            raise answer

    async def key_server_names(self, uuid: str) -> frozenset[str]:
        """A read-back."""
        self.calls.append(("GET", ()))
        return frozenset(self.listed)


class Reports:
    """The outcomes a batch reported, by server."""

    def __init__(self) -> None:
        """None yet."""
        self.outcomes: dict[str, tuple[Outcome, ErrorInfo | None, int]] = {}

    def __call__(
        self,
        d: Decision,
        outcome: Outcome,
        *,
        error: ErrorInfo | None,
        reason: str | None,
        started: datetime | None,
        attempts: int,
    ) -> None:
        """Record one report; a second for the same target is a bug."""
        assert d.server not in self.outcomes, f"{d.server} reported twice"
        self.outcomes[d.server] = (outcome, error, attempts)


def batch(*servers: str) -> Batch:
    """A batch adding ``servers`` to one key manager."""
    decisions = tuple(
        Decision(
            cluster="c1",
            svm="svm1",
            key_manager_uuid=UUID,
            desired=DesiredServer(server=s),
            action=Action.ADD,
        )
        for s in servers
    )
    return Batch(cluster="c1", svm="svm1", key_manager_uuid=UUID, decisions=decisions)


def already_configured() -> ApiError:
    """ONTAP's 65536870: a refusal (nothing applied)."""
    return ApiError("exists", cluster="c1", code=ALREADY_CONFIGURED, http_status=400)


def lost_answer(*, applied: bool) -> RequestTimeout | AppliedThen:
    """A POST whose answer never came: its fate unknown (``applied`` says what happened)."""
    exc = RequestTimeout("no answer", cluster="c1", sent=True)
    return AppliedThen(exc) if applied else exc


def outcomes(reports: Reports) -> dict[str, Outcome]:
    """Server -> outcome."""
    return {s: o for s, (o, _, _) in reports.outcomes.items()}


async def test_servers_go_together_and_are_added() -> None:
    """One POST for the batch; every target `added`, with its POST counted."""
    km, reports = FakeKeyManager(), Reports()
    send = BatchSend(batch(A, B), km, reports)
    await send.attempt()
    assert km.calls == [("POST", (A, B))]
    assert reports.outcomes == {A: (Outcome.ADDED, None, 1), B: (Outcome.ADDED, None, 1)}
    assert send.remaining == []


async def test_a_write_of_unknown_fate_is_read_back_before_anything_is_sent() -> None:
    """A lost answer to an applied POST: the next attempt reads back, finds it, sends nothing."""
    km, reports = FakeKeyManager(lost_answer(applied=True)), Reports()
    send = BatchSend(batch(A, B), km, reports)
    with pytest.raises(RequestTimeout):
        await send.attempt()
    assert send.unknown is not None
    assert reports.outcomes == {}
    await send.attempt()
    assert km.calls == [("POST", (A, B)), ("GET", ())]
    assert outcomes(reports) == {A: Outcome.ADDED, B: Outcome.ADDED}
    assert send.unknown is None


async def test_a_write_found_missing_on_read_back_is_sent_again() -> None:
    """The read-back shows the lost POST did not apply: then, and only then, POST again."""
    km, reports = FakeKeyManager(lost_answer(applied=False)), Reports()
    send = BatchSend(batch(A), km, reports)
    with pytest.raises(RequestTimeout):
        await send.attempt()
    await send.attempt()
    assert km.calls == [("POST", (A,)), ("GET", ()), ("POST", (A,))]
    assert reports.outcomes == {A: (Outcome.ADDED, None, 2)}


async def test_already_configured_for_one_server_is_present_without_a_read() -> None:
    """65536870 for a lone server: the answer says it is there."""
    km, reports = FakeKeyManager(already_configured()), Reports()
    await BatchSend(batch(A), km, reports).attempt()
    assert km.calls == [("POST", (A,))]
    assert outcomes(reports) == {A: Outcome.PRESENT}


async def test_already_configured_for_a_batch_settles_what_is_listed_then_posts_the_rest() -> None:
    """65536870 for two servers, one listed: it is `present`, the other goes out alone."""
    km, reports = FakeKeyManager(already_configured(), listed=frozenset({A})), Reports()
    await BatchSend(batch(A, B), km, reports).attempt()
    assert km.calls == [("POST", (A, B)), ("GET", ()), ("POST", (B,))]
    assert outcomes(reports) == {A: Outcome.PRESENT, B: Outcome.ADDED}


async def test_already_configured_yet_none_listed_falls_back_to_one_server_per_post() -> None:
    """65536870 for a batch none of which is listed: one server per POST from then on."""
    km, reports = FakeKeyManager(already_configured(), already_configured()), Reports()
    send = BatchSend(batch(A, B), km, reports)
    await send.attempt()
    assert not send.together
    assert km.calls == [("POST", (A, B)), ("GET", ()), ("POST", (A,)), ("POST", (B,))]
    assert outcomes(reports) == {A: Outcome.PRESENT, B: Outcome.ADDED}


async def test_a_refusal_leaves_the_batch_for_the_caller() -> None:
    """A known ONTAP refusal is raised, nothing reported, no read-back owed."""
    refusal = ApiError(
        "too many", cluster="c1", code="65536038", category=classify("65536038", 400)
    )
    km, reports = FakeKeyManager(refusal), Reports()
    send = BatchSend(batch(A), km, reports)
    with pytest.raises(ApiError):
        await send.attempt()
    assert (send.unknown, reports.outcomes) == (None, {})
    send.finish(Outcome.FAILED, error=ErrorInfo.from_exception(refusal))
    ((outcome, error, posts),) = reports.outcomes.values()
    assert (outcome, posts) == (Outcome.FAILED, 1)
    assert error is not None
    assert error.category is ErrorCategory.PRECONDITION


async def test_finishing_with_a_write_of_unknown_fate_fails_it_never_skips_it() -> None:
    """A batch stopped with an unsettled write: `failed`, saying it may have applied and why."""
    km, reports = FakeKeyManager(lost_answer(applied=True)), Reports()
    send = BatchSend(batch(A), km, reports)
    with pytest.raises(RequestTimeout):
        await send.attempt()
    send.finish(Outcome.SKIPPED, reason="max_failures", why="cluster unreachable")
    ((outcome, error, _),) = reports.outcomes.values()
    assert outcome is Outcome.FAILED
    assert error is not None
    assert error.category is ErrorCategory.TIMEOUT
    assert error.message.endswith(
        "the write may have applied and was not read back (cluster unreachable)"
    )
