"""The report: contract lines, flushed as written, read back after a kill, summarized."""

from __future__ import annotations

import dataclasses
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkkm.errors import ErrorCategory, ReportError
from bulkkm.events import (
    ClusterResult,
    ErrorInfo,
    Outcome,
    RunFinished,
    RunStarted,
    TargetResult,
    TargetsKnown,
)
from bulkkm.report import ReportWriter, load_resume
from bulkkm.summary import summarize

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TRANSIENT = ErrorInfo(
    category=ErrorCategory.TRANSIENT, message="KMIP down", code="65536921", http_status=500
)


def started() -> RunStarted:
    """A run line event."""
    return RunStarted(
        run_id="r1",
        command="apply",
        dry_run=False,
        started_at=NOW,
        inventory="fleet.yaml",
        inventory_sha256="ab" * 32,
        version="0.1.0",
        resumed_from=None,
        clusters=2,
    )


def target(svm: str, outcome: Outcome, error: ErrorInfo | None = None) -> TargetResult:
    """A target line event."""
    return TargetResult(
        cluster="c1",
        svm=svm,
        key_manager_uuid="u",
        server="kms:5696",
        outcome=outcome,
        error=error,
        attempts=1,
        started_at=NOW,
        finished_at=NOW,
    )


def lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a report, parsed."""
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_report_has_the_contract_lines_in_order(tmp_path: Path) -> None:
    """run, target and cluster lines, then summary; targets filled into the run line."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.create(path, overwrite=True)
    writer(started())
    writer(target("s1", Outcome.ADDED))
    assert lines(path)[0]["targets"] is None  # not known yet, and the file is valid meanwhile
    writer(ClusterResult(cluster="c2", outcome=Outcome.FAILED, error=TRANSIENT))
    writer(TargetsKnown(targets=1))
    writer(
        RunFinished(
            run_id="r1",
            finished_at=NOW,
            duration_ms=5,
            counts={"added": 1},
            clusters_failed=1,
            exit_code=1,
            aborted=False,
        )
    )
    writer.close()
    got = lines(path)
    assert [line["type"] for line in got] == ["run", "target", "cluster", "summary"]
    assert got[0]["targets"] == 1
    assert got[1]["outcome"] == "added"
    assert got[1]["svm"] == "s1"
    assert got[1]["started_at"] == "2026-11-27T10:00:00.000Z"
    assert got[2]["error"] == {
        "category": "transient",
        "code": "65536921",
        "http_status": 500,
        "message": "KMIP down",
    }
    assert got[3]["counts"] == {"added": 1}
    assert got[3]["exit_code"] == 1


def test_report_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """The report is created with mode 0600, even over an existing world-readable file."""
    path = tmp_path / "r.jsonl"
    path.write_text("")
    path.chmod(0o644)
    ReportWriter.create(path, overwrite=True).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_torn_last_line_is_ignored_when_resuming(tmp_path: Path) -> None:
    """A report cut mid-line by kill -9 still resumes from every whole line."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.create(path, overwrite=True)
    writer(started())
    writer(target("s1", Outcome.ADDED))
    writer(target("s2", Outcome.FAILED, TRANSIENT))
    writer(target("s3", Outcome.PRESENT))
    writer.close()
    path.write_bytes(path.read_bytes() + b'{"type": "target", "clus')
    resume = load_resume(path)
    assert resume.run_id == "r1"
    assert sorted(key[1] or "" for key in resume.targets) == ["s1", "s2", "s3"]
    summary = summarize(path)
    assert summary.outcomes == {"added": 1, "failed": 1, "present": 1}
    assert summary.errors == {"transient 65536921": 1}
    assert not summary.complete


def test_a_file_that_is_not_a_report_is_refused(tmp_path: Path) -> None:
    """Resuming from something else is a ReportError, not a crash."""
    path = tmp_path / "notes.txt"
    path.write_text("hello\nworld\n")
    with pytest.raises(ReportError):
        load_resume(path)
    with pytest.raises(ReportError):
        load_resume(tmp_path / "missing.jsonl")


def test_later_line_for_the_same_target_wins(tmp_path: Path) -> None:
    """A target carried over as added, then failed in a later line, is not done."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.create(path, overwrite=True)
    writer(started())
    writer(target("s1", Outcome.ADDED))
    writer(target("s1", Outcome.FAILED, TRANSIENT))
    writer.close()
    assert load_resume(path).targets[("c1", "s1", "kms:5696")].outcome == "failed"


def test_run_line_keeps_its_keys_and_room_for_the_target_count(tmp_path: Path) -> None:
    """The run line's keys in order, ``resumed_from_report`` absolute, ``targets`` set in place."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.create(path, overwrite=True, resumed_from_report=Path("old.jsonl"))
    writer(started())
    raw = path.read_bytes()
    assert raw.endswith(b'"targets":null' + b" " * 12 + b"}\n")
    writer(TargetsKnown(targets=20000))
    writer.close()
    (run,) = lines(path)
    assert list(run) == [
        "type",
        "run_id",
        "command",
        "dry_run",
        "started_at",
        "inventory",
        "inventory_sha256",
        "version",
        "resumed_from",
        "resumed_from_report",
        "clusters",
        "waves",
        "ignore_windows",
        "plan_id",
        "temporal",
        "options",
        "targets",
    ]
    assert run["targets"] == 20000
    assert run["temporal"] is None  # in-process
    assert run["resumed_from_report"] == str(Path("old.jsonl").resolve())
    assert len(path.read_bytes()) == len(raw)


def test_carried_over_is_written_only_when_true(tmp_path: Path) -> None:
    """A new target line has no ``carried_over`` key; a carried one has it, true, last."""
    path = tmp_path / "r.jsonl"
    writer = ReportWriter.create(path, overwrite=True)
    writer(started())
    writer(target("s1", Outcome.ADDED))
    writer(dataclasses.replace(target("s2", Outcome.PRESENT), carried_over=True))
    writer.close()
    new, carried = lines(path)[1:]
    assert "carried_over" not in new
    assert list(carried)[-1] == "carried_over"
    assert carried["carried_over"] is True
    assert new["run_id"] == carried["run_id"] == ""  # as stamped: these were never emitted
