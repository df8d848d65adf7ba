"""The codec: every event to JSON and back unchanged; report lines as the contract has them."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkkm import codec
from bulkkm.codec import CodecError
from bulkkm.errors import ErrorCategory
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    RunFinished,
    TargetResult,
)
from bulkkm.inventory import DesiredServer
from bulkkm.plan import Action, Decision
from bulkkm.secret import Secret

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
"""Any text JSON can carry (lone surrogates are not UTF-8)."""
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


def strategy(hint: object) -> st.SearchStrategy[object]:
    """Values of an event field's type, written apart from the codec's own type table."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Secret or Secret in args:
        return st.none()  # an event holds no secret (see the test below)
    scalars: dict[object, st.SearchStrategy[object]] = {
        str: TEXT,
        int: st.integers(-(2**63), 2**63 - 1),
        bool: st.booleans(),
        float: st.floats(allow_nan=False, allow_infinity=False),
        datetime: st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=ZONES),
    }
    if hint is type(None):
        return st.none()
    if hint in scalars:
        return scalars[hint]
    if isinstance(hint, type) and issubclass(hint, Enum):
        return st.sampled_from(hint)
    if origin is types.UnionType:
        return st.one_of(*(strategy(a) for a in args))
    if origin is tuple:
        return st.lists(strategy(args[0]), max_size=3).map(tuple)
    if origin is dict:
        return st.dictionaries(TEXT, strategy(args[1]), max_size=3)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return instances(hint)
    raise AssertionError(f"no strategy for {hint!r}")


def instances(cls: type) -> st.SearchStrategy[object]:
    """Instances of a frozen dataclass, every field drawn (defaults included)."""
    hints = typing.get_type_hints(cls)
    return st.builds(cls, **{f.name: strategy(hints[f.name]) for f in dataclasses.fields(cls)})


EVENTS = st.one_of(*(instances(cls) for cls in codec.EVENT_TYPES.values()))


@given(EVENTS)
def test_every_event_reads_back_as_it_was_written(event: Event) -> None:
    """event -> JSON -> event is the identity, for every event type and every field."""
    assert codec.decode(codec.encode(event)) == event


@pytest.mark.parametrize("cls", list(codec.EVENT_TYPES.values()), ids=list(codec.EVENT_TYPES))
def test_every_event_type_is_covered(cls: type) -> None:
    """Each event type has a tag and a full field table (a new field type fails here first)."""
    fields = [f.name for f in dataclasses.fields(cls)]
    assert fields[:3] == ["run_id", "seq", "at"]
    assert codec._fields(cls)


def test_stream_line_starts_with_type_and_stamp() -> None:
    """``type``, ``run_id``, ``seq``, ``at`` lead; outcome counts are plain string keys."""
    at = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    event = RunFinished(
        run_id="r1",
        seq=7,
        at=at,
        finished_at=at,
        duration_ms=5,
        counts={Outcome.ADDED.value: 3},
        clusters_failed=0,
        exit_code=0,
        aborted=False,
    )
    line = orjson.loads(codec.encode(event))
    assert list(line)[:4] == ["type", "run_id", "seq", "at"]
    assert line["type"] == "run_finished"
    assert line["at"] == "2026-11-27T10:00:00.123456Z"
    assert line["counts"] == {"added": 3}


def test_a_discovered_cluster_carries_no_kmip_password() -> None:
    """A decision's KMIP password is dropped when the event is made, and never encoded."""
    secret = Secret("kmip-pass-0123456789", source="env:KMIP")
    decision = Decision(
        cluster="c1",
        svm="s1",
        key_manager_uuid="u1",
        desired=DesiredServer(server="kms:5696", password=secret),
        action=Action.ADD,
    )
    event = ClusterDiscovered(cluster="c1", version="9.14.1", targets=1, decisions=(decision,))
    assert event.decisions[0].desired.password is None
    assert event.decisions[0].server == "kms:5696"
    data = codec.encode(event)
    assert b"password" not in data
    assert b"kmip-pass" not in data
    assert codec.decode(data) == event


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1]", "not a JSON object"),
        (b'{"type": "nope"}', "not an event type"),
        (b'{"type": "targets_known"}', "targets missing"),
        (b'{"type": "targets_known", "targets": "3"}', "expected int"),
        (b'{"type": "targets_known", "targets": true}', "expected int"),
        (b'{"type": "targets_known", "targets": 3, "at": "yesterday"}', "not a timestamp"),
        (b'{"type": "targets_known", "targets": 3, "at": "2026-11-27T10:00:00"}', "no time zone"),
        (b'{"type": "cluster_result", "cluster": "c", "outcome": "won"}', "not a Outcome"),
    ],
)
def test_what_is_not_an_event_is_refused(data: bytes, message: str) -> None:
    """A wrong type, a missing field, a naive time: CodecError saying which."""
    with pytest.raises(CodecError, match=message):
        codec.decode(data)


MS_TIMES = st.datetimes(datetime(1970, 1, 2), datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000)
)
NAMES = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
TARGETS = st.builds(
    TargetResult,
    run_id=NAMES,
    cluster=NAMES,
    svm=st.none() | NAMES,
    key_manager_uuid=st.none() | NAMES,
    server=NAMES,
    outcome=st.sampled_from(Outcome),
    error=st.none()
    | st.builds(
        ErrorInfo,
        category=st.sampled_from(ErrorCategory),
        message=TEXT,
        code=st.none() | TEXT,
        http_status=st.none() | st.integers(100, 599),
    ),
    reason=st.none() | TEXT,
    attempts=st.integers(0, 100),
    started_at=MS_TIMES,
    finished_at=MS_TIMES,
    carried_over=st.booleans(),
)


@given(TARGETS)
def test_a_target_line_reads_back_as_the_line_it_was(event: TargetResult) -> None:
    """target line -> event -> target line: the same line, marked carried over."""
    line = codec.report_line(event)
    assert line is not None
    again = codec.report_line(codec.target_from_line(orjson.loads(codec.dumps_line(line))))
    assert again == {**line, "wave": None, "carried_over": True}


def test_target_line_keys_are_the_contracts_in_order() -> None:
    """The target line's keys, in the order the README shows them; carried_over only when true."""
    at = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    event = TargetResult(
        run_id="r1",
        seq=4,
        at=at,
        cluster="c1",
        svm=None,
        key_manager_uuid="u",
        server="kms:5696",
        outcome=Outcome.ADDED,
        attempts=1,
        started_at=at,
        finished_at=at + timedelta(milliseconds=412),
    )
    line = codec.report_line(event)
    assert line is not None
    assert list(line) == [
        "type",
        "run_id",
        "cluster",
        "svm",
        "key_manager_uuid",
        "server",
        "outcome",
        "error",
        "reason",
        "attempts",
        "wave",
        "started_at",
        "finished_at",
        "duration_ms",
    ]
    assert line["duration_ms"] == 412
    assert line["finished_at"] == "2026-11-27T10:00:00.412Z"
    carried = codec.report_line(dataclasses.replace(event, carried_over=True))
    assert carried is not None
    assert list(carried)[-1] == "carried_over"


def test_cluster_line_keys_are_the_contracts_in_order() -> None:
    """The cluster line: no seq or at, the error object as the contract has it."""
    error = ErrorInfo(category=ErrorCategory.AUTH, message="authentication failed", http_status=401)
    line = codec.report_line(
        ClusterResult(run_id="r1", seq=3, cluster="c", outcome=Outcome.FAILED, error=error)
    )
    assert line == {
        "type": "cluster",
        "run_id": "r1",
        "cluster": "c",
        "outcome": "failed",
        "error": {
            "category": "auth",
            "code": None,
            "http_status": 401,
            "message": "authentication failed",
        },
        "reason": None,
        "wave": None,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cluster": ""}, "non-empty string"),
        ({"svm": 3}, "non-empty string"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": True}, "attempts"),
        ({"outcome": "won"}, "won"),
        ({"started_at": "2026-11-27T10:00:00"}, "no time zone"),
        ({"error": {"message": "x"}}, "'category' missing"),
        ({"error": "boom"}, "expected an object"),
    ],
)
def test_a_malformed_target_line_is_refused(change: dict[str, object], message: str) -> None:
    """What ``--resume`` must not trust: CodecError saying what is wrong."""
    line: dict[str, object] = {
        "type": "target",
        "cluster": "c",
        "svm": "s",
        "server": "kms:5696",
        "outcome": "added",
        "started_at": "2026-11-27T10:00:00.000Z",
        "finished_at": "2026-11-27T10:00:00.000Z",
        **change,
    }
    with pytest.raises(CodecError, match=message):
        codec.target_from_line(line)
