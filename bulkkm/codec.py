"""The one codec: events and report lines to JSON and back.

Two shapes, built from the same per-type field table (``_fields``, read off each frozen
dataclass's annotations once):

- **the event stream** (log lines, later a service's server-sent events and its database):
  every field of an event under a ``type`` tag, lossless, so ``decode(encode(e)) == e``::

    {"type": "target_result", "run_id": "…", "seq": 12, "at": "2026-11-27T10:00:00.123456Z",
     "cluster": "paris-01", "svm": "svm_finance", …}

- **the report** (../shared/CONTRACT.md, README "The report"): the ``run``, ``target``,
  ``cluster`` and ``summary`` lines, keys in the contract's order, read back for ``--resume``.

Values: strings, numbers and booleans as they are; enums as their value; datetimes in UTC
with a ``Z`` (microseconds in the stream, milliseconds in the report, as the contract shows
them); tuples as arrays; nested values (``ErrorInfo``, ``LiveKeyManager``, ``Decision``,
``DesiredServer``) as objects. A secret is never encoded: a field that holds one is left out
and reads back as its default (None).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Final, TypeVar

import orjson

from bulkkm.errors import ErrorCategory
from bulkkm.events import (
    ClusterDiscovered,
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    Retrying,
    RunFinished,
    RunStarted,
    TargetResult,
    TargetsKnown,
    Verified,
    WaveFinished,
    WaveStarted,
)
from bulkkm.plan import Operation
from bulkkm.secret import Secret, redact

__all__ = [
    "EVENT_TYPES",
    "CodecError",
    "decode",
    "dumps_line",
    "encode",
    "fields",
    "from_json",
    "loads_line",
    "report_line",
    "run_line",
    "target_from_line",
    "timestamp",
    "to_json",
    "value_json",
]

EVENT_TYPES: Final[Mapping[str, type[Event]]] = {
    "run_started": RunStarted,
    "wave_started": WaveStarted,
    "wave_finished": WaveFinished,
    "cluster_discovered": ClusterDiscovered,
    "targets_known": TargetsKnown,
    "retrying": Retrying,
    "target_result": TargetResult,
    "verified": Verified,
    "cluster_result": ClusterResult,
    "run_finished": RunFinished,
}
"""The stream's ``type`` tag of every event type."""
_TAGS: Final[Mapping[type[Event], str]] = {cls: tag for tag, cls in EVENT_TYPES.items()}

T = TypeVar("T")
Json = object
"""A value orjson writes: None, bool, int, float, str, list, dict[str, Json]."""
Encoder = Callable[[object], Json]
Decoder = Callable[[Json, str], object]
"""Reads a JSON value back; the string says where it is, for the error."""


class CodecError(ValueError):
    """A JSON value that is not the event or line it claims to be."""


def timestamp(moment: datetime) -> str:
    """The report's time: ``2026-11-27T10:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _instant(moment: object) -> Json:
    """The stream's time, to the microsecond: ``2026-11-27T10:00:00.123456Z``."""
    assert isinstance(moment, datetime)
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _moment(value: Json, where: str) -> datetime:
    """A timestamp with its zone (a naive or impossible one is refused)."""
    if not isinstance(value, str):
        raise CodecError(f"{where}: expected a timestamp, got {value!r:.40}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CodecError(f"{where}: not a timestamp: {value!r:.40}") from None
    if moment.tzinfo is None:
        raise CodecError(f"{where}: timestamp {value!r:.40} has no time zone")
    return moment


# --- the field table ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    """One field of a frozen value: how it is written and read back."""

    name: str
    encode: Encoder
    decode: Decoder
    required: bool


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    """The fields of a frozen dataclass, in declaration order; secrets left out."""
    known = _FIELDS.get(cls)
    if known is not None:
        return known
    hints = typing.get_type_hints(cls)
    table = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if _holds_secret(hint):
            continue
        required = (
            field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        )
        encoder, decoder = _converter(hint)
        table.append(_Field(field.name, encoder, decoder, required))
    _FIELDS[cls] = known = tuple(table)
    return known


def _holds_secret(hint: object) -> bool:
    """Whether a field's type is, or may be, a ``Secret``."""
    return hint is Secret or Secret in typing.get_args(hint)


def _converter(hint: object) -> tuple[Encoder, Decoder]:
    """How a value of type ``hint`` is written and read back."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return _same, _SCALARS[hint]
    if hint is datetime:
        return _instant, _moment
    if isinstance(hint, type) and issubclass(hint, Enum):
        return _enum_value, _enum_reader(hint)
    if origin in (types.UnionType, typing.Union) and type(None) in args:
        (inner,) = (a for a in args if a is not type(None))
        return _optional(*_converter(inner))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _array(*_converter(args[0]))
    if origin is dict and args[0] is str:
        return _mapping(*_converter(args[1]))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _object(hint), _object_reader(hint)
    raise TypeError(f"the codec has no mapping for {hint!r}")  # a new event field: add one


def _same(value: object) -> Json:
    """A JSON scalar as it is."""
    return value


def _scalar(kind: type) -> Decoder:
    """A reader that takes exactly ``kind`` (an int is not a bool, nor a bool an int)."""

    def read(value: Json, where: str) -> object:
        if type(value) is not kind:
            raise CodecError(f"{where}: expected {kind.__name__}, got {value!r:.40}")
        return value

    return read


def _float(value: Json, where: str) -> object:
    """A finite number, as a float."""
    if type(value) not in (int, float) or not math.isfinite(typing.cast(float, value)):
        raise CodecError(f"{where}: expected a number, got {value!r:.40}")
    return float(typing.cast(float, value))


_SCALARS: Final[Mapping[object, Decoder]] = {
    str: _scalar(str),
    int: _scalar(int),
    bool: _scalar(bool),
    float: _float,
}


def _enum_value(value: object) -> Json:
    """An enum as its value."""
    assert isinstance(value, Enum)
    return value.value


def _enum_reader(kind: type[Enum]) -> Decoder:
    """A reader of one enum's values."""

    def read(value: Json, where: str) -> object:
        try:
            return kind(value)
        except ValueError:
            raise CodecError(f"{where}: not a {kind.__name__}: {value!r:.40}") from None

    return read


def _optional(encoder: Encoder, decoder: Decoder) -> tuple[Encoder, Decoder]:
    """``X | None``: null, or an X."""
    return (
        lambda value: None if value is None else encoder(value),
        lambda value, where: None if value is None else decoder(value, where),
    )


def _array(encoder: Encoder, decoder: Decoder) -> tuple[Encoder, Decoder]:
    """``tuple[X, ...]``: an array."""

    def read(value: Json, where: str) -> object:
        if not isinstance(value, list):
            raise CodecError(f"{where}: expected an array, got {value!r:.40}")
        return tuple(decoder(item, f"{where}[{i}]") for i, item in enumerate(value))

    return (lambda value: [encoder(item) for item in typing.cast(tuple[object], value)]), read


def _mapping(encoder: Encoder, decoder: Decoder) -> tuple[Encoder, Decoder]:
    """``dict[str, X]``: an object."""

    def write(value: object) -> Json:
        return {str(k): encoder(v) for k, v in typing.cast(dict[object, object], value).items()}

    def read(value: Json, where: str) -> object:
        if not isinstance(value, dict):
            raise CodecError(f"{where}: expected an object, got {value!r:.40}")
        return {str(k): decoder(v, f"{where}.{k}") for k, v in value.items()}

    return write, read


def _object(cls: type) -> Encoder:
    """A nested frozen value: an object of its fields."""
    return lambda value: {f.name: f.encode(getattr(value, f.name)) for f in _fields(cls)}


def _object_reader(cls: type) -> Decoder:
    """A nested frozen value read back."""
    return lambda value, where: _build(cls, value, where)


def _build(cls: Callable[..., T], value: Json, where: str) -> T:
    """An instance of the frozen dataclass ``cls`` from a JSON object."""
    if not isinstance(value, dict):
        raise CodecError(f"{where}: expected an object, got {value!r:.40}")
    kwargs: dict[str, object] = {}
    for field in _fields(typing.cast(type, cls)):
        if field.name in value:
            kwargs[field.name] = field.decode(value[field.name], f"{where}.{field.name}")
        elif field.required:
            raise CodecError(f"{where}: {field.name} missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise CodecError(f"{where}: {exc}") from None


# --- the event stream --------------------------------------------------------------------


def to_json(event: Event) -> dict[str, Json]:
    """An event as a JSON-ready mapping: its ``type`` tag, then every field in order."""
    line: dict[str, Json] = {"type": _TAGS[type(event)]}
    for field in _fields(type(event)):
        line[field.name] = field.encode(getattr(event, field.name))
    return line


def fields(event: Event, *names: str) -> dict[str, Json]:
    """Some fields of an event, JSON-ready, as ``to_json`` writes them (for log lines)."""
    table = {f.name: f for f in _fields(type(event))}
    return {name: table[name].encode(getattr(event, name)) for name in names}


def value_json(value: object) -> dict[str, Json]:
    """A frozen value an event holds (``ErrorInfo``, ``Decision`` …) as a JSON-ready mapping."""
    return {f.name: f.encode(getattr(value, f.name)) for f in _fields(type(value))}


def from_json(line: Mapping[str, Json]) -> Event:
    """An event from its JSON mapping; CodecError when it is not one."""
    tag = line.get("type")
    cls = EVENT_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise CodecError(f"not an event type: {tag!r:.40}")
    return typing.cast(Event, _build(cls, dict(line), str(tag)))  # cls is one of Event's


def encode(event: Event) -> bytes:
    """An event as one line of JSON (no newline)."""
    return orjson.dumps(to_json(event))


def decode(data: bytes | str) -> Event:
    """An event from ``encode``'s JSON; CodecError when it is not one."""
    try:
        line = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from None
    if not isinstance(line, dict):
        raise CodecError("not a JSON object")
    return from_json(line)


# --- the report --------------------------------------------------------------------------


def _error(error: ErrorInfo | None) -> Json:
    """The report's ``error`` object."""
    if error is None:
        return None
    # The client redacted these already; this is the last line of defence, since
    # `report summarize` runs in a process that knows no secret.
    return {
        "category": error.category.value,
        "code": None if error.code is None else redact(error.code),
        "http_status": error.http_status,
        "message": redact(error.message),
    }


def _server_text(text: str | None) -> str | None:
    """A name or id a server gave, masked again: ``ontap`` masked it, but ``report
    summarize`` and ``plan --show`` run in a process that knows no secret."""
    return None if text is None else redact(text)


def _verify_outcome(event: Verified) -> str:
    """A ``verify`` line's outcome: ``passed``, ``failed``, or how a stop ended it first."""
    if event.passed:
        return "passed"
    return (event.stopped or Outcome.FAILED).value


def run_line(event: RunStarted, *, resumed_from_report: str | None = None) -> dict[str, Json]:
    """The report's ``run`` line; ``targets`` is null until every cluster is discovered."""
    return {
        "type": "run",
        "run_id": event.run_id,
        "command": event.command,
        "dry_run": event.dry_run,
        "started_at": timestamp(event.started_at),
        "inventory": event.inventory,
        "inventory_sha256": event.inventory_sha256,
        "version": event.version,
        "resumed_from": event.resumed_from,
        "resumed_from_report": resumed_from_report,
        "clusters": event.clusters,
        "waves": list(event.waves) if event.waves else None,
        "ignore_windows": event.ignore_windows,
        "plan_id": event.plan_id,
        "temporal": None if event.temporal is None else value_json(event.temporal),
        "options": list(event.options),
        "targets": None,
    }


def report_line(event: Event) -> dict[str, Json] | None:
    """The report line an event makes (``target``, ``cluster``, ``summary``), if it makes one.

    The ``run`` line is ``run_line``: it carries what the writer knows besides the event.
    """
    match event:
        case TargetResult():
            line: dict[str, Json] = {
                "type": "target",
                "run_id": event.run_id,
                "cluster": event.cluster,
                # An SVM name as discovered: a hostile server may name one after a secret.
                "svm": None if event.svm is None else redact(event.svm),
                "key_manager_uuid": _server_text(event.key_manager_uuid),
                "server": event.server,
                **({} if event.action is None else {"action": event.action.value}),
                "outcome": event.outcome.value,
                "error": _error(event.error),
                "reason": event.reason,
                "attempts": event.attempts,
                "wave": event.wave,
                "started_at": timestamp(event.started_at),
                "finished_at": timestamp(event.finished_at),
                "duration_ms": event.duration_ms,
            }
            if event.carried_over:
                line["carried_over"] = True
            return line
        case Verified():
            return {
                "type": "verify",
                "run_id": event.run_id,
                "cluster": event.cluster,
                "svm": None if event.svm is None else redact(event.svm),
                "key_manager_uuid": _server_text(event.key_manager_uuid),
                "servers": {server: dict(nodes) for server, nodes in event.servers.items()},
                "outcome": _verify_outcome(event),
                "reason": event.reason,
                "wave": event.wave,
                "duration_ms": event.duration_ms,
            }
        case ClusterResult():
            return {
                "type": "cluster",
                "run_id": event.run_id,
                "cluster": event.cluster,
                "outcome": event.outcome.value,
                "error": _error(event.error),
                "reason": event.reason,
                "wave": event.wave,
            }
        case RunFinished():
            return {
                "type": "summary",
                "run_id": event.run_id,
                "finished_at": timestamp(event.finished_at),
                "duration_ms": event.duration_ms,
                "targets": sum(event.counts.values()),
                "counts": dict(event.counts),
                "clusters_failed": event.clusters_failed,
                "exit_code": event.exit_code,
                "aborted": event.aborted,
                "stop_reason": event.stop_reason,
            }
        case _:
            return None


def dumps_line(line: Mapping[str, Json]) -> bytes:
    """A report line as bytes, newline included."""
    return orjson.dumps(line) + b"\n"


def loads_line(raw: bytes) -> dict[str, Json]:
    """A report line read back as a mapping; CodecError when it is not JSON or not a line."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CodecError("not a JSON line") from None
    if not isinstance(line, dict) or not isinstance(line.get("type"), str):
        raise CodecError("not a bulkkm report line")
    return line


def target_from_line(line: Mapping[str, Json]) -> TargetResult:
    """A ``target`` line as the event that wrote it, marked carried over; CodecError if not.

    Its ``wave`` is not read: a carried line belongs to the wave of the run that carries it.
    """
    where = "target line"
    attempts = line.get("attempts", 0)
    if type(attempts) is not int or attempts < 0:
        raise CodecError(f"attempts {attempts!r:.40}")
    run_id = line.get("run_id")
    reason = line.get("reason")
    action = line.get("action")
    try:
        return TargetResult(
            run_id=run_id if isinstance(run_id, str) else "",
            cluster=_text(_required(line, "cluster")),
            svm=_optional_text(_required(line, "svm")),
            key_manager_uuid=_optional_text(line.get("key_manager_uuid")),
            server=_text(_required(line, "server")),
            outcome=Outcome(str(_required(line, "outcome"))),
            error=_error_info(line.get("error")),
            attempts=attempts,
            started_at=_moment(_required(line, "started_at"), f"{where}.started_at"),
            finished_at=_moment(_required(line, "finished_at"), f"{where}.finished_at"),
            reason=None if reason is None else str(reason),
            carried_over=True,
            action=None if action is None else Operation(str(action)),
        )
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from None


def _required(line: Mapping[str, Json], key: str) -> Json:
    """A key the line must have."""
    if key not in line:
        raise CodecError(f"'{key}' missing")
    return line[key]


def _text(value: Json) -> str:
    """A required non-empty string."""
    if not isinstance(value, str) or not value:
        raise CodecError(f"expected a non-empty string, got {value!r:.40}")
    return value


def _optional_text(value: Json) -> str | None:
    """Null or a non-empty string."""
    return None if value is None else _text(value)


def _error_info(error: Json) -> ErrorInfo | None:
    """A line's ``error`` object read back (its category must be one of the report's)."""
    if error is None:
        return None
    if not isinstance(error, dict):
        raise CodecError(f"expected an object, got {error!r:.40}")
    code, status = error.get("code"), error.get("http_status")
    return ErrorInfo(
        category=ErrorCategory(str(_required(error, "category"))),
        message=str(error.get("message", "")),
        code=None if code is None else str(code),
        http_status=status if type(status) is int else None,
    )
