"""The JSON-lines report: written as results arrive, read back to resume and to summarize.

Each line goes out in one ``write`` on an unbuffered file, so a killed process leaves every
finished line whole. The ``run`` line is written first, before discovery knows how many
targets there are; its ``targets`` field is reserved as ``null`` padded with spaces (JSON
allows them) and filled in place once the count is final.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from bulkkm.errors import ErrorCategory, ReportError
from bulkkm.events import (
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    TargetResult,
    TargetsKnown,
)

__all__ = [
    "DONE",
    "ReportSummary",
    "ReportWriter",
    "TargetKey",
    "finished_targets",
    "read_lines",
    "summarize",
    "timestamp",
]

DONE: Final = frozenset({Outcome.ADDED, Outcome.PRESENT})
"""Outcomes a ``--resume`` run does not attempt again."""
_TARGETS_FIELD: Final = b'"targets":null'
_TARGETS_ROOM: Final = 12

TargetKey = tuple[str, str | None, str]
"""(cluster, svm or None for the cluster scope, server)."""


def timestamp(moment: datetime) -> str:
    """``2026-11-27T10:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(error: ErrorInfo | None) -> dict[str, object] | None:
    """The report's ``error`` object."""
    if error is None:
        return None
    return {
        "category": error.category.value,
        "code": error.code,
        "http_status": error.http_status,
        "message": error.message,
    }


class ReportWriter:
    """A subscriber that writes the report, one flushed line per event."""

    def __init__(self, path: Path) -> None:
        """Create (or truncate) the report, readable by its owner only."""
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        self._file = os.fdopen(fd, "wb", buffering=0)
        self._run_id = ""
        self._targets_offset: int | None = None

    def __call__(self, event: Event) -> None:
        """Write the line an event makes, if it makes one."""
        match event:
            case RunStarted():
                self._run_id = event.run_id
                self._write_run(event)
            case TargetsKnown():
                self._fill_targets(event.targets)
            case TargetResult():
                self._write(self._target(event))
            case ClusterResult():
                self._write(
                    {
                        "type": "cluster",
                        "run_id": self._run_id,
                        "cluster": event.cluster,
                        "outcome": event.outcome.value,
                        "error": _error(event.error),
                        "reason": event.reason,
                        "wave": event.wave,
                    }
                )
            case RunFinished():
                self._write(
                    {
                        "type": "summary",
                        "run_id": event.run_id,
                        "finished_at": timestamp(event.finished_at),
                        "duration_ms": event.duration_ms,
                        "targets": sum(event.counts.values()),
                        "counts": event.counts,
                        "clusters_failed": event.clusters_failed,
                        "exit_code": event.exit_code,
                        "aborted": event.aborted,
                        "stop_reason": event.stop_reason,
                    }
                )
            case _:
                pass

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _target(self, result: TargetResult) -> dict[str, object]:
        """A ``target`` line."""
        line: dict[str, object] = {
            "type": "target",
            "run_id": self._run_id,
            "cluster": result.cluster,
            "svm": result.svm,
            "key_manager_uuid": result.key_manager_uuid,
            "server": result.server,
            "outcome": result.outcome.value,
            "error": _error(result.error),
            "reason": result.reason,
            "attempts": result.attempts,
            "wave": result.wave,
            "started_at": timestamp(result.started_at),
            "finished_at": timestamp(result.finished_at),
            "duration_ms": result.duration_ms,
        }
        if result.carried_over:
            line["carried_over"] = True
        return line

    def _write_run(self, event: RunStarted) -> None:
        """The ``run`` line, with room to fill in ``targets`` later."""
        line = orjson.dumps(
            {
                "type": "run",
                "run_id": event.run_id,
                "command": event.command,
                "dry_run": event.dry_run,
                "started_at": timestamp(event.started_at),
                "inventory": event.inventory,
                "inventory_sha256": event.inventory_sha256,
                "version": event.version,
                "resumed_from": event.resumed_from,
                "clusters": event.clusters,
                "waves": list(event.waves) if event.waves else None,
                "ignore_windows": event.ignore_windows,
                "plan_id": event.plan_id,
                "targets": None,
            }
        )
        at = line.rindex(_TARGETS_FIELD)
        self._targets_offset = at + len(_TARGETS_FIELD) - len(b"null")
        self._file.write(line[:-1] + b" " * _TARGETS_ROOM + b"}\n")

    def _fill_targets(self, targets: int) -> None:
        """Write the final target count into the ``run`` line, in place."""
        if self._targets_offset is None:
            return
        text = str(targets).encode().ljust(len(b"null") + _TARGETS_ROOM)
        os.pwrite(self._file.fileno(), text, self._targets_offset)

    def _write(self, line: dict[str, object]) -> None:
        """One line, in one write."""
        self._file.write(orjson.dumps(line) + b"\n")


def read_lines(path: Path) -> Iterator[dict[str, object]]:
    """Every complete line of a report; a torn last line (a killed writer) is left out."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the report: {exc.strerror}") from exc
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            if number == len(lines):  # torn by a kill: everything before it is whole
                return
            raise ReportError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(line, dict) or "type" not in line:
            raise ReportError(f"{path}:{number}: not a bulkkm report line")
        yield line


def finished_targets(path: Path) -> tuple[str, dict[TargetKey, TargetResult]]:
    """The run id of a report and its targets that ended ``added`` or ``present``."""
    run_id = ""
    done: dict[TargetKey, TargetResult] = {}
    for line in read_lines(path):
        if line["type"] == "run":
            run_id = str(line.get("run_id", ""))
        elif line["type"] == "target":
            result = _parse_target(path, line)
            key = (result.cluster, result.svm, result.server)
            if result.outcome in DONE:
                done[key] = result
            else:
                done.pop(key, None)
    if not run_id:
        raise ReportError(f"{path}: no run line: not a bulkkm report")
    return run_id, done


def _parse_target(path: Path, line: dict[str, object]) -> TargetResult:
    """A ``target`` line as the event that wrote it."""
    try:
        error = line.get("error")
        svm = line["svm"]
        uuid = line.get("key_manager_uuid")
        return TargetResult(
            cluster=str(line["cluster"]),
            svm=None if svm is None else str(svm),
            key_manager_uuid=None if uuid is None else str(uuid),
            server=str(line["server"]),
            outcome=Outcome(str(line["outcome"])),
            error=None
            if not isinstance(error, dict)
            else ErrorInfo(
                category=ErrorCategory(str(error["category"])),
                message=str(error.get("message", "")),
                code=None if error.get("code") is None else str(error["code"]),
                http_status=status if isinstance(status := error.get("http_status"), int) else None,
            ),
            attempts=int(str(line.get("attempts", 0))),
            started_at=datetime.fromisoformat(str(line["started_at"])),
            finished_at=datetime.fromisoformat(str(line["finished_at"])),
            reason=None if line.get("reason") is None else str(line.get("reason")),
            carried_over=True,
        )
    except (KeyError, ValueError) as exc:
        raise ReportError(f"{path}: malformed target line: {exc}") from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReportSummary:
    """What ``bulkkm report summarize`` shows."""

    run: dict[str, object] | None
    outcomes: dict[str, int]
    errors: dict[str, int]
    """``category code`` -> count, most frequent first."""
    failing_clusters: dict[str, int]
    """cluster -> targets not done, most first."""
    waves: dict[int, dict[str, int]]
    """wave -> outcome -> count, when the run rolled out in waves."""
    clusters_failed: tuple[str, ...]
    clusters_not_done: dict[str, int]
    """``failed discovery_failed``, ``skipped outside_window`` … -> clusters with a cluster line."""
    summary: dict[str, object] | None
    complete: bool
    """False when the report has no summary line (the run was killed)."""


def summarize(path: Path) -> ReportSummary:
    """Counts by outcome, error code and cluster, from a report (complete or not)."""
    run: dict[str, object] | None = None
    summary: dict[str, object] | None = None
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    waves: dict[int, Counter[str]] = {}
    clusters_failed: list[str] = []
    clusters: Counter[str] = Counter()
    for line in read_lines(path):
        kind = line["type"]
        if kind == "run":
            run = line
        elif kind == "summary":
            summary = line
        elif kind in ("target", "cluster"):
            outcome = str(line.get("outcome"))
            error = line.get("error")
            if isinstance(error, dict):
                errors[
                    " ".join(str(error.get(k)) for k in ("category", "code") if error.get(k))
                ] += 1
            wave = line.get("wave")
            if isinstance(wave, int):
                key = outcome if kind == "target" else f"cluster {outcome}"
                waves.setdefault(wave, Counter())[key] += 1
            if kind == "cluster":
                clusters[f"{outcome} {line.get('reason')}"] += 1
                if outcome == Outcome.FAILED:
                    clusters_failed.append(str(line.get("cluster")))
                continue
            outcomes[outcome] += 1
            if outcome not in DONE and outcome != Outcome.WOULD_ADD:
                failing[str(line.get("cluster"))] += 1
    return ReportSummary(
        run=run,
        outcomes=dict(outcomes.most_common()),
        errors=dict(errors.most_common()),
        failing_clusters=dict(failing.most_common()),
        waves={number: dict(counts) for number, counts in sorted(waves.items())},
        clusters_failed=tuple(clusters_failed),
        clusters_not_done=dict(clusters.most_common()),
        summary=summary,
        complete=summary is not None,
    )
