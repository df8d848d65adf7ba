"""The resume filter: an old line is carried only when the cluster confirms it (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from bulkkm.events import Outcome, TargetResult
from bulkkm.inventory import DesiredServer
from bulkkm.plan import Action, Decision, Operation
from bulkkm.resume import Resume

NOW = datetime(2026, 11, 27, 10, tzinfo=UTC)
SERVER = "kms.example.com:5696"


def decision(action: Action, uuid: str = "km-1") -> Decision:
    """A target of svm1 on c1, as this run's plan decided it."""
    return Decision(
        cluster="c1",
        svm="svm1",
        key_manager_uuid=uuid,
        desired=DesiredServer(server=SERVER),
        action=action,
    )


def resume(outcome: Outcome, uuid: str = "km-1") -> Resume:
    """A resumed report whose one line for that target ended ``outcome``."""
    old = TargetResult(
        cluster="c1",
        svm="svm1",
        key_manager_uuid=uuid,
        server=SERVER,
        outcome=outcome,
        started_at=NOW,
        finished_at=NOW,
    )
    return Resume(run_id="r1", report="r.jsonl", inventory_sha256="x", targets={old_key(): old})


def old_key() -> tuple[str, str | None, str]:
    """The target's key in a report."""
    return ("c1", "svm1", SERVER)


@pytest.mark.parametrize("outcome", [Outcome.ADDED, Outcome.PRESENT])
def test_a_done_line_is_carried_when_the_cluster_has_the_server(outcome: Outcome) -> None:
    """added or present before, present now: the old line stands."""
    carried = resume(outcome).carried(decision(Action.PRESENT))
    assert carried is not None
    assert carried.outcome is outcome


@pytest.mark.parametrize(
    ("old", "now", "uuid"),
    [
        (Outcome.ADDED, Action.ADD, "km-1"),  # the server went since: add it again
        (Outcome.FAILED, Action.PRESENT, "km-1"),  # not done before: this run's own outcome
        (Outcome.ADDED, Action.PRESENT, "km-other"),  # another key manager now (another fleet)
        (Outcome.ADDED, Action.BLOCKED, "km-1"),
    ],
    ids=["server-gone", "failed-before", "other-key-manager", "blocked-now"],
)
def test_nothing_else_is_carried(old: Outcome, now: Action, uuid: str) -> None:
    """The old report is a witness: where the cluster disagrees, the plan decides again."""
    assert resume(old).carried(decision(now, uuid=uuid)) is None


def removal(action: Action) -> Decision:
    """A retired server of svm1 on c1, as this run's migration plan found it."""
    return dataclasses.replace(decision(action), operation=Operation.REMOVE)


def old_removal(outcome: Outcome) -> Resume:
    """A resumed report whose line for that removal ended ``outcome``."""
    base = resume(outcome)
    (old,) = base.targets.values()
    line = dataclasses.replace(old, action=Operation.REMOVE)
    return dataclasses.replace(base, targets={old_key(): line})


@pytest.mark.parametrize("outcome", [Outcome.REMOVED, Outcome.ABSENT])
def test_a_removal_is_carried_when_the_server_is_gone(outcome: Outcome) -> None:
    """removed or absent before, absent now: the old line stands."""
    assert old_removal(outcome).carried(removal(Action.ABSENT)) is not None


@pytest.mark.parametrize(
    ("old", "now"),
    [
        (Outcome.REMOVED, Action.REMOVE),  # it came back: remove it again
        (Outcome.FAILED, Action.ABSENT),
    ],
    ids=["server-back", "failed-before"],
)
def test_a_removal_the_cluster_does_not_confirm_is_not_carried(old: Outcome, now: Action) -> None:
    """The cluster decides: a retired server present again is planned again."""
    assert old_removal(old).carried(removal(now)) is None


def test_an_addition_line_does_not_stand_for_a_removal() -> None:
    """An old `added` line of the same server does not confirm its removal."""
    assert resume(Outcome.ADDED).carried(removal(Action.ABSENT)) is None
