"""Compliance: per cluster and key manager, its state from the latest run that saw it.

When an engine run ends, its report is read back and each key manager (a cluster and an SVM,
or the cluster's own) gets one row: ``failed`` when a target failed or was blocked, ``drift``
when one is missing (``would_add``) or a retired server still there (``would_remove``),
``compliant`` when every target is in place (``present``, ``added``, ``removed``, ``absent``)
and no verification failed, ``unknown`` when the run saw it but settled nothing (every target
skipped or cancelled). An unknown never hides what an earlier run knew: such a row is only
written where there was none. A cluster the run could not discover marks its rows ``failed``
(``unknown`` when the run stopped before reaching it).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Final

from bulkkm.errors import BulkkmError
from bulkkm.report import read_lines

__all__ = ["ComplianceRow", "ComplianceState", "Observation", "observe_report"]


class ComplianceState(StrEnum):
    """What the latest run that saw a key manager found."""

    COMPLIANT = "compliant"
    DRIFT = "drift"
    FAILED = "failed"
    UNKNOWN = "unknown"


_FAILED: Final = frozenset({"failed", "blocked"})
_DRIFT: Final = frozenset({"would_add", "would_remove"})
_DONE: Final = frozenset({"present", "added", "removed", "absent"})


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceRow:
    """One key manager's latest state (``svm`` None: the cluster's own key manager)."""

    cluster: str
    svm: str | None
    key_manager_uuid: str | None
    state: ComplianceState
    counts: Mapping[str, int]
    """The run's outcomes for this key manager's targets."""
    detail: str | None
    """The first error, or what drifted."""
    run_id: str
    """The service run that saw it."""
    command: str
    seen_at: datetime


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """What one report says: rows for the key managers it settled, and clusters unreached."""

    rows: tuple[ComplianceRow, ...]
    unknown: tuple[ComplianceRow, ...]
    """Key managers seen but not settled: written only where no row exists yet."""
    unreached: tuple[ComplianceRow, ...]


class _KeyManager:
    """Outcomes gathered for one key manager."""

    __slots__ = ("counts", "detail", "uuid", "verify_failed")

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.counts: Counter[str] = Counter()
        self.detail: str | None = None
        self.uuid: str | None = None
        self.verify_failed = False


def observe_report(path: Path, *, run_id: str, command: str, at: datetime) -> Observation:
    """Read a finished (or cut) report into compliance rows; blocking: call in a thread."""
    seen: dict[tuple[str, str | None], _KeyManager] = defaultdict(_KeyManager)
    unreached: list[ComplianceRow] = []
    try:
        lines = list(read_lines(path))
    except BulkkmError:
        return Observation(rows=(), unknown=(), unreached=())
    for line in lines:
        kind = line["type"]
        if kind == "target":
            km = seen[(str(line["cluster"]), _optional(line.get("svm")))]
            outcome = str(line["outcome"])
            km.counts[outcome] += 1
            km.uuid = km.uuid or _optional(line.get("key_manager_uuid"))
            if km.detail is None:
                km.detail = _error_message(line.get("error")) or _drift_detail(line, outcome)
        elif kind == "verify" and line.get("outcome") == "failed":
            km = seen[(str(line["cluster"]), _optional(line.get("svm")))]
            km.verify_failed = True
            km.detail = km.detail or "verification failed"
        elif kind == "cluster":
            failed = line.get("outcome") == "failed"
            unreached.append(
                ComplianceRow(
                    cluster=str(line["cluster"]),
                    svm=None,
                    key_manager_uuid=None,
                    state=ComplianceState.FAILED if failed else ComplianceState.UNKNOWN,
                    counts={},
                    detail=_error_message(line.get("error"))
                    or ("not reached: the run stopped first" if not failed else None),
                    run_id=run_id,
                    command=command,
                    seen_at=at,
                )
            )
    rows: list[ComplianceRow] = []
    unknown: list[ComplianceRow] = []
    for (cluster, svm), km in sorted(seen.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        state = _state(km)
        row = ComplianceRow(
            cluster=cluster,
            svm=svm,
            key_manager_uuid=km.uuid,
            state=state,
            counts=dict(km.counts),
            detail=None if state is ComplianceState.COMPLIANT else km.detail,
            run_id=run_id,
            command=command,
            seen_at=at,
        )
        (unknown if state is ComplianceState.UNKNOWN else rows).append(row)
    return Observation(rows=tuple(rows), unknown=tuple(unknown), unreached=tuple(unreached))


def _state(km: _KeyManager) -> ComplianceState:
    """A key manager's state from its targets' outcomes."""
    outcomes = set(km.counts)
    if outcomes & _FAILED or km.verify_failed:
        return ComplianceState.FAILED
    if outcomes & _DRIFT:
        return ComplianceState.DRIFT
    if outcomes and outcomes <= _DONE:
        return ComplianceState.COMPLIANT
    return ComplianceState.UNKNOWN  # some targets skipped or cancelled: not settled


def _optional(value: object) -> str | None:
    """A report field that may be null."""
    return None if value is None else str(value)


def _error_message(error: object) -> str | None:
    """A report line's error, as one line."""
    if isinstance(error, Mapping):
        message = str(error.get("message", ""))
        code = error.get("code")
        return f"{message} (code {code})" if code else message or None
    return None


def _drift_detail(line: Mapping[str, object], outcome: str) -> str | None:
    """What drifted, for a would_add or would_remove."""
    if outcome == "would_add":
        return f"missing {line.get('server')}"
    if outcome == "would_remove":
        return f"retired server still there: {line.get('server')}"
    return None
