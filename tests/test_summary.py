"""The summary aggregator: what a run did and what is left, from report lines alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkkm.summary import CUT, aggregate, next_report_name, summary_json, summary_lines
from tests.cli import Result, bulkkm

RUN: dict[str, Any] = {
    "type": "run",
    "run_id": "r2",
    "command": "apply",
    "dry_run": False,
    "inventory": "fleet.yaml",
    "started_at": "2026-11-27T10:00:00.000Z",
    "clusters": 6,
}
SUMMARY: dict[str, Any] = {
    "type": "summary",
    "run_id": "r2",
    "duration_ms": 1500,
    "exit_code": 130,
    "stop_reason": "interrupted",
}


def target(
    cluster: str,
    svm: str | None,
    outcome: str,
    *,
    code: str | None = None,
    reason: str | None = None,
    carried: bool = False,
    wave: int | None = None,
    seconds: int = 1,
) -> dict[str, Any]:
    """A target line."""
    line: dict[str, Any] = {
        "type": "target",
        "cluster": cluster,
        "svm": svm,
        "server": "kms1.example.com:5696",
        "outcome": outcome,
        "error": None,
        "reason": reason,
        "wave": wave,
        "started_at": "2026-11-27T10:00:00.000Z",
        "finished_at": f"2026-11-27T10:00:0{seconds}.000Z",
    }
    if code is not None or outcome in ("failed", "blocked"):
        category = "precondition" if outcome == "blocked" else "transient"
        line["error"] = {"category": category, "code": code, "message": "boom"}
    if carried:
        line["carried_over"] = True
    return line


def cluster(name: str, outcome: str, reason: str, category: str | None = None) -> dict[str, Any]:
    """A cluster line."""
    error = None if category is None else {"category": category, "code": None, "message": "x"}
    return {
        "type": "cluster",
        "cluster": name,
        "outcome": outcome,
        "reason": reason,
        "error": error,
    }


def interrupted_run() -> list[dict[str, Any]]:
    """A resumed run interrupted midway: carried, new, failed and clusters never started."""
    return [
        RUN,
        target("c1", "s1", "added", carried=True),
        target("c1", "s2", "added", seconds=3),
        target("c2", "s1", "failed", code="65536921"),
        target("c2", None, "blocked", reason="too_many_servers"),
        target("c3", "s1", "cancelled", reason="interrupted"),
        cluster("c4", "skipped", "interrupted"),
        cluster("c5", "skipped", "interrupted"),
        cluster("c6", "failed", "discovery_failed", category="transport"),
        SUMMARY,
    ]


def test_new_and_carried_over_outcomes_are_counted_apart() -> None:
    """Outcomes carried over from the resumed report are not counted as this run's work."""
    result = aggregate(interrupted_run())
    assert result.carried_over == {"added": 1}
    assert result.new == {"added": 1, "failed": 1, "blocked": 1, "cancelled": 1}
    assert result.outcomes["added"] == 2
    assert result.targets == 5


def test_clusters_not_done_by_reason_and_named() -> None:
    """Skipped clusters by their reason; a discovery that failed on transport is unreachable."""
    result = aggregate(interrupted_run())
    assert result.clusters_not_done == {"interrupted": ("c4", "c5"), "unreachable": ("c6",)}
    text = "\n".join(summary_lines(result, report=Path("r.jsonl")))
    assert "clusters not done: 3" in text
    assert "  interrupted: 2 (c4, c5)" in text
    assert "  unreachable: 1 (c6)" in text


def test_failed_targets_are_listed_with_the_ontap_code_described() -> None:
    """cluster, SVM, server and the code's meaning, for each failed target."""
    text = "\n".join(summary_lines(aggregate(interrupted_run()), report=None))
    assert (
        "  c2  s1  kms1.example.com:5696  65536921 (the KMIP server could not execute the command)"
        ": boom" in text
    )
    assert "  c2  (cluster)  kms1.example.com:5696  too_many_servers: boom" in text


def test_next_command_resumes_into_a_new_report(tmp_path: Path) -> None:
    """Something left to do: the exact command, with a report name that does not exist yet."""
    report = tmp_path / "rollout.jsonl"
    (tmp_path / "rollout-2.jsonl").touch()
    lines = summary_lines(aggregate(interrupted_run()), report=report)
    expected = f"bulkkm apply fleet.yaml --report {tmp_path}/rollout-3.jsonl --resume {report}"
    assert f"to finish the job: {expected}" in lines


@pytest.mark.parametrize(
    ("lines", "why"),
    [
        ([RUN, target("c1", "s1", "added"), {**SUMMARY, "stop_reason": None}], "all done"),
        ([{**RUN, "command": "plan"}, target("c1", "s1", "would_add"), SUMMARY], "plan"),
        ([{**RUN, "dry_run": True}, target("c1", "s1", "would_add"), SUMMARY], "dry run"),
        ([RUN, target("c1", "s1", "added"), cluster("c9", "skipped", "limit"), SUMMARY], "limit"),
    ],
)
def test_no_next_command_when_nothing_is_left(lines: list[dict[str, Any]], why: str) -> None:
    """Done, read-only, or only clusters --limit left out: no resume command."""
    text = "\n".join(summary_lines(aggregate(lines), report=Path("r.jsonl")))
    assert "to finish the job" not in text, why


def test_waves_and_slowest_clusters() -> None:
    """Per-wave counts; slowest clusters only for runs that changed something."""
    lines = [
        {**RUN, "waves": ["1", "100%"]},
        target("c1", "s1", "added", wave=1, seconds=4),
        target("c2", "s1", "added", wave=2, seconds=2),
        {**cluster("c3", "skipped", "rollout_stopped"), "wave": 2},
        SUMMARY,
    ]
    result = aggregate(lines)
    assert result.waves == {1: {"added": 1}, 2: {"added": 1, "cluster skipped": 1}}
    assert result.slowest == (("c1", 4.0), ("c2", 2.0))
    text = summary_lines(result, report=None)
    assert "wave 1: added 1" in text
    assert "wave 2: added 1, cluster skipped 1" in text
    read_only = aggregate([{**RUN, "command": "check"}, target("c1", "s1", "would_add"), SUMMARY])
    assert read_only.slowest == ()
    assert not [line for line in summary_lines(read_only, report=None) if "slowest" in line]


def test_long_lists_say_how_many_more_or_show_every_one() -> None:
    """Past ``CUT`` rows a list ends with "and N more"; ``every`` shows them all."""
    lines = [RUN, *(target(f"c{i:03}", "s1", "failed", code="65536600") for i in range(30))]
    result = aggregate(lines)
    cut = summary_lines(result, report=Path("r.jsonl"))
    assert sum(1 for line in cut if "65536600 (a node is out of quorum)" in line) == CUT
    assert f"  ... and {30 - CUT} more (--all shows every one)" in cut
    every = summary_lines(result, report=Path("r.jsonl"), every=True)
    assert sum(1 for line in every if "65536600 (a node is out of quorum)" in line) == 30
    assert not [line for line in every if "more" in line]


def test_a_cut_report_says_so_and_still_resumes() -> None:
    """No summary line: the summary says the run was killed and gives the resume command."""
    result = aggregate(interrupted_run()[:-1])
    assert not result.complete
    text = "\n".join(summary_lines(result, report=Path("r.jsonl")))
    assert "no summary line" in text
    assert "--resume r.jsonl" in text


def test_json_holds_every_list_in_full() -> None:
    """``--json``: the aggregate, lists whole, ONTAP descriptions included."""
    body = summary_json(aggregate(interrupted_run()))
    assert body["clusters_not_done"] == {"interrupted": ["c4", "c5"], "unreachable": ["c6"]}
    assert body["new"] == {"added": 1, "failed": 1, "blocked": 1, "cancelled": 1}
    failed = [p for p in body["problems"] if p["outcome"] == "failed"]  # type: ignore[attr-defined]
    assert failed[0]["description"] == "the KMIP server could not execute the command"
    orjson.dumps(body)


def test_next_report_name() -> None:
    """``r.jsonl`` -> ``r-2.jsonl``; ``r-2.jsonl`` -> ``r-3.jsonl``; taken names skipped."""
    assert next_report_name(Path("r.jsonl"), {}) == Path("r-2.jsonl")
    assert next_report_name(Path("d/r-2.jsonl"), {}) == Path("d/r-3.jsonl")
    assert next_report_name(Path("r.jsonl"), {Path("r-2.jsonl"): True}) == Path("r-3.jsonl")


async def summarize(*args: str) -> Result:
    """``python -m bulkkm report summarize ARGS``."""
    return await bulkkm("report", "summarize", *args)


def write(path: Path, lines: list[dict[str, Any]], tail: bytes = b"") -> Path:
    """A report file."""
    path.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines) + tail)
    return path


async def test_summarize_an_empty_report_exits_6(tmp_path: Path) -> None:
    """An empty file: one clear line, exit 6."""
    code, out, err = await summarize(str(write(tmp_path / "r.jsonl", [])))
    assert code == 6
    assert out == ""
    assert "is empty" in err
    assert len(err.strip().splitlines()) == 1


async def test_summarize_a_cut_report_exits_5_with_its_counts(tmp_path: Path) -> None:
    """A report killed mid-line: the counts of the whole lines, a clear note, exit 5."""
    path = write(tmp_path / "r.jsonl", interrupted_run()[:-1], tail=b'{"type": "tar')
    code, out, err = await summarize(str(path))
    assert code == 5
    assert "interrupted: 2 (c4, c5)" in out
    assert f"--resume {path}" in out
    assert "is cut" in err


async def test_summarize_json_and_all(tmp_path: Path) -> None:
    """--json prints the aggregate; --all lists every failed target; a complete report exits 0."""
    lines = [RUN, *(target(f"c{i:03}", "s1", "failed", code="65536921") for i in range(25))]
    path = write(tmp_path / "r.jsonl", [*lines, {**SUMMARY, "stop_reason": None}])
    code, out, _ = await summarize(str(path), "--json")
    assert code == 0
    body = orjson.loads(out)
    assert len(body["problems"]) == 25
    assert body["complete"] is True
    code, out, _ = await summarize(str(path))
    assert "... and 5 more (--all shows every one)" in out
    code, out, _ = await summarize(str(path), "--all")
    assert code == 0
    assert sum(1 for line in out.splitlines() if line.startswith("  c0")) == 25
    assert "more" not in out


def test_a_migration_counts_removals_and_verifications() -> None:
    """removed/absent are done; each verify line counts, a failed one is named with its reason."""
    lines: list[dict[str, object]] = [
        {"type": "run", "run_id": "r", "command": "migrate", "inventory": "f.yaml"},
        {
            "type": "target",
            "cluster": "c1",
            "svm": "s1",
            "server": "new:5696",
            "action": "add",
            "outcome": "added",
        },
        {"type": "verify", "cluster": "c1", "svm": "s1", "outcome": "passed"},
        {
            "type": "target",
            "cluster": "c1",
            "svm": "s1",
            "server": "old:5696",
            "action": "remove",
            "outcome": "removed",
        },
        {
            "type": "verify",
            "cluster": "c2",
            "svm": None,
            "outcome": "failed",
            "reason": "replacement_unreachable",
        },
        {
            "type": "target",
            "cluster": "c2",
            "svm": None,
            "server": "old:5696",
            "action": "remove",
            "outcome": "blocked",
            "reason": "replacement_unreachable",
        },
        {"type": "summary", "exit_code": 1},
    ]
    result = aggregate(lines)
    assert result.verified == {"passed": 1, "failed": 1}
    assert result.verify_failures == ("c2/(cluster): replacement_unreachable",)
    assert result.clusters_with_targets_left == {"c2": 1}
    text = "\n".join(summary_lines(result, report=Path("m.jsonl")))
    assert "key managers verified: passed 1, failed 1" in text
    assert "bulkkm migrate f.yaml --report m-2.jsonl --resume m.jsonl" in text


def test_a_verification_the_run_stopped_is_counted_cancelled_not_failed() -> None:
    """Verify lines ``cancelled`` (interrupted) are counted as such, not listed as failures."""
    lines: list[dict[str, object]] = [
        {"type": "run", "run_id": "r", "command": "migrate", "inventory": "f.yaml"},
        {"type": "verify", "cluster": "c1", "svm": "s1", "outcome": "passed"},
        {
            "type": "verify",
            "cluster": "c1",
            "svm": "s2",
            "outcome": "cancelled",
            "reason": "interrupted",
        },
        {
            "type": "verify",
            "cluster": "c2",
            "svm": None,
            "outcome": "cancelled",
            "reason": "interrupted",
        },
        {"type": "summary", "exit_code": 130, "stop_reason": "interrupted"},
    ]
    result = aggregate(lines)
    assert result.verified == {"passed": 1, "cancelled": 2}
    assert result.verify_failures == ()
    text = summary_lines(result, report=Path("m.jsonl"))
    assert "key managers verified: passed 1, cancelled 2" in text
    assert not any("failed" in line for line in text)


TEMPORAL = {
    "address": "temporal.example.com:7233",
    "namespace": "ops",
    "workflow_id": "bulkkm-run-r2",
}


def test_a_temporal_run_is_resumed_through_the_same_server_and_namespace() -> None:
    """A ``--temporal`` run left work undone: the command resumes it on the regional workers."""
    lines = [{**RUN, "temporal": TEMPORAL}, *interrupted_run()[1:]]
    text = summary_lines(aggregate(lines), report=Path("r.jsonl"))
    expected = (
        "bulkkm apply fleet.yaml --temporal temporal.example.com:7233 --namespace ops "
        "--report r-2.jsonl --resume r.jsonl"
    )
    assert f"to finish the job: {expected}" in text
    default = {**TEMPORAL, "namespace": "default"}
    lines = [{**RUN, "temporal": default}, *interrupted_run()[1:]]
    text = summary_lines(aggregate(lines), report=Path("r.jsonl"))
    assert any(line.endswith("--resume r.jsonl") and "--namespace" not in line for line in text)


def test_a_cut_temporal_report_is_finished_by_attaching_to_its_workflow() -> None:
    """No summary line on a ``--temporal`` run: its workflow goes on, so --attach, not a new run."""
    lines = [{**RUN, "temporal": TEMPORAL}, *interrupted_run()[1:-1]]
    result = aggregate(lines)
    assert not result.complete
    text = summary_lines(result, report=Path("r.jsonl"))
    expected = (
        "bulkkm apply --temporal temporal.example.com:7233 --namespace ops "
        "--attach bulkkm-run-r2 --report r.jsonl"
    )
    assert f"to finish the job: {expected}" in text
    assert summary_json(result)["temporal"] == TEMPORAL


def test_the_command_to_finish_a_run_repeats_the_options_that_shaped_it() -> None:
    """An approved plan, waves, thresholds and --limit come back, so the rest runs as the start
    did: not past the plan, not to every remaining cluster at once."""
    flags = ["--plan", "plan.json", "--limit", "paris-*", "--max-fail-percent", "5"]
    flags += ["--waves", "1,10%,100%", "--pause-between-waves", "30", "--confirm-waves"]
    lines = [{**RUN, "options": flags}, *interrupted_run()[1:]]
    result = aggregate(lines)
    text = summary_lines(result, report=Path("r.jsonl"))
    expected = (
        "bulkkm apply fleet.yaml --plan plan.json --limit 'paris-*' --max-fail-percent 5 "
        "--waves 1,10%,100% --pause-between-waves 30 --confirm-waves "
        "--report r-2.jsonl --resume r.jsonl"
    )
    assert f"to finish the job: {expected}" in text
    assert summary_json(result)["options"] == flags


def test_a_report_without_the_run_s_options_still_says_to_add_the_same_limit() -> None:
    """A report from before the run line kept its flags: the command has none, and the hint
    about --limit stays; with the flags (--limit among them) the hint is not needed."""
    left = [*interrupted_run()[:-1], cluster("c9", "skipped", "limit"), interrupted_run()[-1]]
    old = "\n".join(summary_lines(aggregate(left), report=Path("r.jsonl")))
    assert "(add the same --limit to stay within this run's clusters)" in old
    assert "to finish the job: bulkkm apply fleet.yaml --report r-2.jsonl --resume r.jsonl" in old
    new = [{**RUN, "options": ["--limit", "c[0-8]"]}, *left[1:]]
    text = "\n".join(summary_lines(aggregate(new), report=Path("r.jsonl")))
    assert "--limit 'c[0-8]' --report r-2.jsonl --resume r.jsonl" in text
    assert "add the same --limit" not in text


def test_a_report_already_resumed_points_to_the_newer_one(tmp_path: Path) -> None:
    """``report summarize`` of a report a later run resumed: no command to finish the job
    again (it went on there), but the report to read; a report beside it that resumed
    another one does not count."""
    report = tmp_path / "rollout.jsonl"
    newer = tmp_path / "rollout-2.jsonl"
    newer.write_bytes(orjson.dumps({**RUN, "resumed_from_report": str(tmp_path / "x.jsonl")}))
    text = summary_lines(aggregate(interrupted_run()), report=report)
    assert any(line.startswith("to finish the job: ") for line in text)
    newer.write_bytes(orjson.dumps({**RUN, "resumed_from_report": str(report.resolve())}))
    text = summary_lines(aggregate(interrupted_run()), report=report)
    assert f"already resumed: bulkkm report summarize {newer}" in text
    assert not any(line.startswith("to finish the job: ") for line in text)


def test_a_cluster_that_failed_for_another_reason_than_discovery_is_listed_by_it() -> None:
    """duplicate_cluster, or a regional worker that failed: named by their reason, not as a
    failed discovery; failed discoveries by what failed."""
    lines = [
        RUN,
        cluster("c1", "failed", "duplicate_cluster", category="precondition"),
        cluster("c2", "failed", "worker_failed", category="transport"),
        cluster("c3", "failed", "discovery_failed", category="transport"),
        cluster("c4", "failed", "discovery_failed", category="auth"),
        SUMMARY,
    ]
    assert aggregate(lines).clusters_not_done == {
        "duplicate_cluster": ("c1",),
        "worker_failed": ("c2",),
        "unreachable": ("c3",),
        "discovery failed (auth)": ("c4",),
    }


def test_a_check_names_the_clusters_that_are_not_as_the_inventory_wants() -> None:
    """check (or plan): the clusters with targets it would change, most first, apart from
    those with targets left (blocked): an auditor sees which clusters drift."""
    lines = [
        {**RUN, "command": "check"},
        target("c1", "s1", "would_add"),
        target("c1", "s2", "would_add"),
        target("c2", "s1", "would_add"),
        target("c3", "s1", "present"),
        target("c4", "s1", "blocked", reason="too_many_servers"),
        SUMMARY,
    ]
    result = aggregate(lines)
    text = summary_lines(result, report=None)
    assert "clusters to change: 2 (c1 2, c2 1)" in text
    assert "clusters with targets left: 1 (c4 1)" in text
    assert summary_json(result)["clusters_to_change"] == {"c1": 2, "c2": 1}
