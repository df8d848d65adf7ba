"""The JSON-lines report: written as results arrive, read back to resume and to summarize.

Each line goes out in one ``write`` on an unbuffered file, so a killed process leaves every
finished line whole. The ``run`` line is written first, before discovery knows how many
targets there are; its ``targets`` field is reserved as ``null`` padded with spaces (JSON
allows them) and filled in place once the count is final.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, Final

import orjson
import structlog

from bulkkm.errors import ErrorCategory, ReportError
from bulkkm.events import (
    ClusterResult,
    ErrorInfo,
    Event,
    Outcome,
    RunFinished,
    RunStarted,
    TargetKey,
    TargetResult,
    TargetsKnown,
)
from bulkkm.outputs import open_output
from bulkkm.resume import DONE, Resume
from bulkkm.secret import redact

__all__ = [
    "DONE",
    "ReportWriter",
    "TargetKey",
    "load_resume",
    "read_lines",
    "timestamp",
]

log = structlog.get_logger("bulkkm")

_TARGETS_FIELD: Final = b'"targets":null'
_TARGETS_ROOM: Final = 12


def timestamp(moment: datetime) -> str:
    """``2026-11-27T10:00:00.123Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(error: ErrorInfo | None) -> dict[str, object] | None:
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


class ReportWriter:
    """A subscriber that writes the report, one flushed line per event.

    It is *essential*: should a write fail (a full disk), the engine stops starting new
    work rather than go on with nothing on record.
    """

    essential = True

    def __init__(
        self, file: BinaryIO, *, path: Path, resumed_from_report: Path | None = None
    ) -> None:
        """Write to ``file`` (unbuffered, opened by ``bulkkm.outputs.open_output``) at ``path``."""
        self.path = path
        self._file = file
        self._resumed_from_report = resumed_from_report
        self._names: dict[str, str] = {}
        self._run_id = ""
        self._targets_offset: int | None = None

    @classmethod
    def create(
        cls,
        path: Path,
        *,
        overwrite: bool = False,
        inputs: Iterable[Path] = (),
        resumed_from_report: Path | None = None,
    ) -> ReportWriter:
        """A writer on a new report at ``path``, checked as ``open_output`` checks outputs."""
        file = open_output(path, what="--report", overwrite=overwrite, inputs=inputs)
        return cls(file, path=path, resumed_from_report=resumed_from_report)

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
            "svm": None if result.svm is None else self._name(result.svm),
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

    def _name(self, svm: str) -> str:
        """An SVM name as discovered, redacted (a hostile server may name one after a secret)."""
        name = self._names.get(svm)
        if name is None:
            name = self._names[svm] = redact(svm)
        return name

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
                "resumed_from_report": (
                    None
                    if self._resumed_from_report is None
                    else str(self._resumed_from_report.resolve())
                ),
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
    for _, line in _numbered_lines(path):
        yield line


def _numbered_lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    """Every complete line of a report with its line number."""
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
        if not isinstance(line, dict) or not isinstance(line.get("type"), str):
            raise ReportError(f"{path}:{number}: not a bulkkm report line")
        yield number, line


MAX_CHAIN: Final = 100
"""Reports followed back along a resume chain, at most."""


def load_resume(path: Path) -> Resume:
    """What ``--resume PATH`` starts from: every target's latest line along the report chain.

    A report written by a resumed run names the report it resumed from; lines of earlier
    reports fill in targets the newer ones lack (a resumed run killed before it wrote its
    carried lines, a cluster it could not reach). A malformed line is refused here, before
    anything is sent.
    """
    chain: list[tuple[dict[str, object], list[TargetResult]]] = []
    seen: set[tuple[int, int]] = set()
    current: Path | None = path
    while current is not None and len(chain) < MAX_CHAIN:
        try:
            stat = current.stat()
        except OSError as exc:
            if not chain:
                raise ReportError(f"{current}: cannot read the report: {exc.strerror}") from None
            log.warning("resume_chain_broken", report=str(current), error=exc.strerror)
            break
        if (stat.st_dev, stat.st_ino) in seen:
            break
        seen.add((stat.st_dev, stat.st_ino))
        run, targets = _run_and_targets(current)
        chain.append((run, targets))
        earlier = run.get("resumed_from_report")
        current = Path(earlier) if isinstance(earlier, str) and earlier else None
    latest: dict[TargetKey, TargetResult] = {}
    for _, targets in reversed(chain):  # oldest first, so newer lines win
        for result in targets:
            latest[(result.cluster, result.svm, result.server)] = result
    run = chain[0][0]
    return Resume(
        run_id=str(run["run_id"]),
        report=str(path),
        inventory_sha256=str(run.get("inventory_sha256", "")),
        targets=latest,
    )


def _run_and_targets(path: Path) -> tuple[dict[str, object], list[TargetResult]]:
    """A report's ``run`` line and its target lines, each checked."""
    run: dict[str, object] | None = None
    targets: list[TargetResult] = []
    for number, line in _numbered_lines(path):
        if line["type"] == "run" and run is None:
            if not isinstance(line.get("run_id"), str) or not line["run_id"]:
                raise ReportError(f"{path}:{number}: the run line has no run_id")
            run = line
        elif line["type"] == "target":
            targets.append(_parse_target(path, number, line))
    if run is None:
        raise ReportError(f"{path}: no run line: not a bulkkm report")
    return run, targets


def _parse_target(path: Path, number: int, line: dict[str, object]) -> TargetResult:
    """A ``target`` line as the event that wrote it; ReportError naming the line if malformed."""
    try:
        error = line.get("error")
        svm = line["svm"]
        uuid = line.get("key_manager_uuid")
        attempts = line.get("attempts", 0)
        if not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"attempts {attempts!r:.40}")
        return TargetResult(
            cluster=_text(line["cluster"]),
            svm=None if svm is None else _text(svm),
            key_manager_uuid=None if uuid is None else _text(uuid),
            server=_text(line["server"]),
            outcome=Outcome(str(line["outcome"])),
            error=None if error is None else _error_info(_mapping(error)),
            attempts=attempts,
            started_at=_moment(line["started_at"]),
            finished_at=_moment(line["finished_at"]),
            reason=None if line.get("reason") is None else str(line.get("reason")),
            carried_over=True,
        )
    except (KeyError, TypeError, ValueError) as exc:
        what = f"{exc} missing" if isinstance(exc, KeyError) else str(exc)
        raise ReportError(f"{path}:{number}: malformed target line ({what})") from None


def _error_info(error: dict[str, object]) -> ErrorInfo:
    """A line's ``error`` object read back."""
    code, status = error.get("code"), error.get("http_status")
    return ErrorInfo(
        category=ErrorCategory(str(error["category"])),
        message=str(error.get("message", "")),
        code=None if code is None else str(code),
        http_status=status if isinstance(status, int) else None,
    )


def _text(value: object) -> str:
    """A required string field."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r:.40}")
    return value


def _mapping(value: object) -> dict[str, object]:
    """An object field."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r:.40}")
    return value


def _moment(value: object) -> datetime:
    """A timestamp with its zone (a naive or impossible one is refused)."""
    moment = datetime.fromisoformat(_text(value))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r:.40} has no time zone")
    return moment
