"""Compliance from finished runs, and the Prometheus metrics, over real HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bulkkm.service._compliance import ComplianceState, observe_report
from bulkkm.simulator import Faults
from tests.engine.conftest import fleet_spec
from tests.service.conftest import DONE, harness


async def test_compliance_follows_the_latest_run_that_saw_each_key_manager(
    tmp_path: Path,
) -> None:
    """A check: drift everywhere; an apply on one cluster, a dead one: compliant, drift, failed."""
    async with harness(tmp_path, fleet_spec(clusters=3, svms=2, initial_servers=0)) as h:
        first = await h.admin.start("check")
        await h.admin.until(first["id"], *DONE)
        seen = (await h.clients["read"].get("/api/v1/compliance")).body
        assert {r["state"] for r in seen["key_managers"]} == {"drift"}
        assert seen["totals"]["drift"] == len(seen["key_managers"]) > 3
        assert all(r["run_id"] == first["id"] for r in seen["key_managers"])
        assert all(r["detail"].startswith("missing ") for r in seen["key_managers"])

        apply = await h.admin.start("apply", limit=["sim-0000"])
        apply = await h.admin.until(apply["id"], "awaiting_approval")
        ok = await h.admin.post(
            f"/api/v1/runs/{apply['id']}/approve", {"plan_hash": apply["plan_hash"]}
        )
        assert ok.status == 202
        assert (await h.admin.until(apply["id"], *DONE))["state"] == "succeeded"
        h.fleet.set_faults("sim-0002", Faults(dead=True))
        last = await h.admin.start("check", limit=["sim-0001", "sim-0002"])
        await h.admin.until(last["id"], *DONE)

        rows = (await h.clients["read"].get("/api/v1/compliance")).body["key_managers"]
        by_cluster: dict[str, set[str]] = {}
        for row in rows:
            by_cluster.setdefault(row["cluster"], set()).add(row["state"])
        assert by_cluster == {
            "sim-0000": {"compliant"},
            "sim-0001": {"drift"},
            "sim-0002": {"failed"},
        }
        dead = [r for r in rows if r["cluster"] == "sim-0002"]
        assert all(r["run_id"] == last["id"] and r["detail"] for r in dead)
        assert {r["command"] for r in rows if r["cluster"] == "sim-0000"} == {"apply"}
        only = await h.clients["read"].get("/api/v1/compliance?state=failed")
        assert {r["cluster"] for r in only.body["key_managers"]} == {"sim-0002"}
        assert (await h.clients["read"].get("/api/v1/compliance?state=green")).status == 400


def test_unsettled_key_managers_are_unknown_and_verify_failures_fail(tmp_path: Path) -> None:
    """Skipped-only targets: unknown (kept apart); a failed verification: failed."""

    def target(svm: str, outcome: str) -> dict[str, object]:
        return {
            "type": "target",
            "cluster": "c1",
            "svm": svm,
            "key_manager_uuid": f"u-{svm}",
            "server": "kms:5696",
            "outcome": outcome,
            "error": None,
        }

    lines = [
        {"type": "run", "run_id": "r"},
        target("a", "skipped"),
        target("b", "removed"),
        {"type": "verify", "cluster": "c1", "svm": "b", "outcome": "failed"},
        target("c", "present"),
        {"type": "cluster", "cluster": "c2", "outcome": "skipped", "error": None},
    ]
    report = tmp_path / "report.jsonl"
    report.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    seen = observe_report(report, run_id="r", command="migrate", at=datetime.now(UTC))
    assert {(r.svm, r.state) for r in seen.rows} == {
        ("b", ComplianceState.FAILED),
        ("c", ComplianceState.COMPLIANT),
    }
    assert [(r.svm, r.state) for r in seen.unknown] == [("a", ComplianceState.UNKNOWN)]
    assert [(r.cluster, r.state) for r in seen.unreached] == [("c2", ComplianceState.UNKNOWN)]


def _sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the text format (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if match is None or match.group(1) != name:
            continue
        found = dict(re.findall(r'([a-z_]+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return 0.0


async def test_metrics_count_runs_targets_retries_and_latency(tmp_path: Path) -> None:
    """After an apply with throttled POSTs: runs by state, outcomes, retries by code, latency."""
    spec = fleet_spec(clusters=2, svms=2, initial_servers=0, seed=3)
    async with harness(tmp_path, spec) as h:
        assert (await h.anonymous.get("/metrics")).status == 401
        run = await h.admin.start("apply")
        run = await h.admin.until(run["id"], "awaiting_approval")
        h.fleet.set_faults("sim-0001", Faults(throttle_rate=0.5))
        approve = f"/api/v1/runs/{run['id']}/approve"
        assert (await h.admin.post(approve, {"plan_hash": run["plan_hash"]})).status == 202
        run = await h.admin.until(run["id"], *DONE)
        answer = await h.clients["read"].get("/metrics")
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.raw.decode()
        assert _sample(text, "bulkkm_runs", state="succeeded") == 1
        assert _sample(text, "bulkkm_runs", state="running") == 0
        added = run["counts"]["added"]
        assert _sample(text, "bulkkm_targets_total", command="apply", outcome="added") == added
        planned = _sample(text, "bulkkm_targets_total", command="apply", outcome="would_add")
        assert planned == added  # the plan phase's outcomes, under the run's command
        seconds = _sample(text, "bulkkm_target_duration_seconds_count", group="none")
        assert seconds == added + planned
        retries = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("bulkkm_retries_total{")
        )
        assert retries > 0
        assert _sample(text, "bulkkm_retries_total", code="429") == retries
        latency = _sample(
            text,
            "bulkkm_api_request_duration_seconds_count",
            method="GET",
            route="/api/v1/runs/{id}",
        )
        assert latency >= 1
