"""Runs through the API over real HTTP against the simulator: plan, approve, stream, report,
retry, queueing, expiry, cancel."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults
from tests.cli import bulkkm, read_report
from tests.engine.conftest import fleet_spec
from tests.invariants import check_invariants, check_report, key_managers, servers_of
from tests.service.conftest import DONE, Harness, harness


def report_of(answer_raw: bytes) -> list[dict[str, Any]]:
    """A downloaded report's lines."""
    return [orjson.loads(line) for line in answer_raw.splitlines()]


def fleet_complete(h: Harness) -> None:
    """Every key manager of every target has every new server."""
    inventory = load_inventory(h.inventory)
    servers = {s.server for c in inventory.clusters for s in c.key_servers}
    for key, km in key_managers(h.fleet.state()).items():
        if km.get("mode", "external") == "external":
            assert servers <= servers_of(km), key


async def test_plan_run_is_created_read_and_reported(tmp_path: Path) -> None:
    """A plan run: 201, read back by id and in the list, its report and plan downloadable."""
    async with harness(tmp_path, fleet_spec(clusters=3, svms=2, initial_servers=0)) as h:
        created = await h.clients["operate"].start("plan")
        assert created["created_by"] == "operate-bot"
        run = await h.admin.until(created["id"], *DONE)
        assert run["state"] == "succeeded", run
        assert run["exit_code"] == 0
        assert set(run["counts"]) == {"would_add"}
        assert run["plan"]["format"] == "bulkkm-plan/1"
        plan = await h.clients["read"].get(f"/api/v1/runs/{run['id']}/plan")
        assert hashlib.sha256(plan.raw).hexdigest() == run["plan_hash"]
        report = await h.clients["read"].get(f"/api/v1/runs/{run['id']}/report")
        assert report.headers["Content-Type"] == "application/x-ndjson"
        lines = report_of(report.raw)
        check_report(lines)
        assert sum(lines[-1]["counts"].values()) == sum(run["counts"].values())
        listed = await h.clients["read"].get("/api/v1/runs?state=succeeded")
        assert [r["id"] for r in listed.body["runs"]] == [run["id"]]
        none = await h.clients["read"].get("/api/v1/runs?state=running,queued")
        assert none.body["runs"] == []
        later = await h.clients["read"].get("/api/v1/runs?since=2999-01-01T00:00:00Z")
        assert later.body["runs"] == []


async def test_apply_executes_exactly_the_approved_plan_and_streams_it(tmp_path: Path) -> None:
    """apply: plan, wrong hash 409, right hash 202; SSE to the end; the report as the CLI's."""
    async with harness(tmp_path, fleet_spec(clusters=4, svms=3, initial_servers=0)) as h:
        before = h.fleet.state()
        writes = len(h.fleet.write_log)
        run = await h.clients["operate"].start("apply")
        run = await h.admin.until(run["id"], "awaiting_approval")
        assert len(h.fleet.write_log) == writes, "planning wrote something"
        assert run["plan"]["clusters"], run
        approve = f"/api/v1/runs/{run['id']}/approve"
        wrong = await h.clients["approve"].post(approve, {"plan_hash": "0" * 64})
        assert wrong.status == 409
        assert "plan_hash" in wrong.body["error"]
        refused = await h.clients["operate"].post(approve, {"plan_hash": run["plan_hash"]})
        assert refused.status == 403
        stream = asyncio.create_task(h.clients["read"].events(run["id"]))
        ok = await h.clients["approve"].post(
            approve, {"plan_hash": run["plan_hash"], "comment": "CHG-4711"}
        )
        assert ok.status == 202, ok.body
        again = await h.clients["approve"].post(approve, {"plan_hash": run["plan_hash"]})
        assert again.status == 409  # no longer awaiting approval
        async with asyncio.timeout(30):
            messages = await stream
        run = await h.admin.run(run["id"])
        assert run["state"] == "succeeded", run
        assert run["approved_by"] == "approve-bot"
        assert run["approval_comment"] == "CHG-4711"

        ids = [int(m["id"]) for m in messages if "id" in m]
        assert ids == list(range(1, len(ids) + 1))
        events = [m["data"] for m in messages if "id" in m]
        assert [e["type"] for e in events].count("run_finished") == 2  # plan, then apply
        assert events[-1]["type"] == "run_finished"
        assert messages[-1]["event"] == "end"
        assert messages[-1]["data"] == {"state": "succeeded", "exit_code": 0}

        answer = await h.clients["read"].get(f"/api/v1/runs/{run['id']}/report")
        path = h.data / "runs" / run["id"] / "report.jsonl"
        assert answer.raw == path.read_bytes()
        lines = report_of(answer.raw)
        check_report(lines)
        assert lines[0]["plan_id"] == run["plan"]["plan_id"]
        check_invariants(
            inventory=load_inventory(h.inventory),
            before=before,
            after=h.fleet.state(),
            writes=h.fleet.write_log[writes:],
            report=lines,
        )
        fleet_complete(h)

        # The CLI, executing the same plan file, writes lines of the same shape.
        plan = tmp_path / "plan.json"
        plan.write_bytes((await h.admin.get(f"/api/v1/runs/{run['id']}/plan")).raw)
        cli = tmp_path / "cli.jsonl"
        await bulkkm("apply", "--plan", str(plan), "--report", str(cli), "-q")
        cli_keys = {line["type"]: list(line) for line in read_report(cli)}
        assert {line["type"]: list(line) for line in lines} == cli_keys


async def test_events_resume_from_last_event_id_and_filter_by_cluster(tmp_path: Path) -> None:
    """Last-Event-ID resumes after that id; ?cluster= keeps that cluster's and run-wide events."""
    async with harness(tmp_path, fleet_spec(clusters=3, svms=2, initial_servers=0)) as h:
        run = await h.admin.start("check")
        await h.admin.until(run["id"], *DONE)
        client = h.clients["read"]
        every = await client.events(run["id"])
        ids = [int(m["id"]) for m in every if "id" in m]
        assert [m["data"]["seq"] for m in every if "id" in m] == ids  # one phase: id = seq
        rest = await client.events(run["id"], last=3)
        assert [int(m["id"]) for m in rest if "id" in m] == ids[3:]
        assert await client.events(run["id"], last=ids[-1]) == []  # 204: nothing more
        mine = await client.events(run["id"], query="?cluster=sim-0001")
        clusters = Counter(m["data"].get("cluster") for m in mine if "id" in m)
        assert set(clusters) == {"sim-0001", None}
        assert clusters["sim-0001"] > 0
        assert mine[-1]["event"] == "end"


async def test_retry_finishes_what_failed(tmp_path: Path) -> None:
    """A cluster failing during the approved apply; retry (planned, approved again) ends it."""
    async with harness(tmp_path, fleet_spec(clusters=3, svms=2, initial_servers=0)) as h:
        first = await h.admin.start("apply")
        first = await h.admin.until(first["id"], "awaiting_approval")
        h.fleet.set_faults("sim-0001", Faults(transient_rate=1.0))
        ok = await h.admin.post(
            f"/api/v1/runs/{first['id']}/approve", {"plan_hash": first["plan_hash"]}
        )
        assert ok.status == 202
        first = await h.admin.until(first["id"], *DONE)
        assert first["state"] == "failed", first
        assert first["counts"]["failed"] > 0
        h.fleet.set_faults("sim-0001", Faults())

        answer = await h.clients["operate"].post(f"/api/v1/runs/{first['id']}/retry")
        assert answer.status == 201, answer.body
        second = await h.admin.until(answer.body["id"], "awaiting_approval")
        assert second["retry_of"] == first["id"]
        changed = [
            c["name"]
            for c in second["plan"]["clusters"]
            if any(km["add"] for km in c["key_managers"])
        ]
        assert changed == ["sim-0001"]
        ok = await h.admin.post(
            f"/api/v1/runs/{second['id']}/approve", {"plan_hash": second["plan_hash"]}
        )
        assert ok.status == 202
        second = await h.admin.until(second["id"], *DONE)
        assert second["state"] == "succeeded", second
        lines = report_of((await h.admin.get(f"/api/v1/runs/{second['id']}/report")).raw)
        check_report(lines)
        assert lines[0]["resumed_from"] is not None
        targets = [line for line in lines if line["type"] == "target"]
        assert {t["outcome"] for t in targets} <= {"added", "present"}
        fleet_complete(h)
        applied = Counter(
            (w.cluster, w.key_manager_uuid, w.server)
            for w in h.fleet.write_log
            if w.applied and w.method == "POST"
        )
        assert max(applied.values()) == 1
        done = await h.admin.post(f"/api/v1/runs/{second['id']}/retry")
        assert done.status == 409  # nothing left to retry


async def test_runs_on_one_cluster_never_overlap(tmp_path: Path) -> None:
    """A run needing a held cluster waits queued; runs on other clusters start at once."""
    spec = fleet_spec(clusters=3, svms=2, initial_servers=0, faults=Faults(latency=0.15))
    async with harness(tmp_path, spec) as h:
        one = await h.admin.start("check", limit=["sim-0000"])
        two = await h.admin.start("check", limit=["sim-0001"])
        everything = await h.admin.start("check")
        last = await h.admin.start("check", limit=["sim-0002"])
        assert one["state"] == "running"
        assert two["state"] == "running"
        assert everything["state"] == "queued"
        assert last["state"] == "queued"  # it must not overtake the run queued before it
        for run in (one, two):
            assert (await h.admin.until(run["id"], *DONE))["state"] == "succeeded"
        runs = [await h.admin.until(r["id"], *DONE) for r in (everything, last)]
        assert [r["state"] for r in runs] == ["succeeded", "succeeded"]
        assert runs[0]["finished_at"] <= runs[1]["started_at"]


async def test_plans_expire_discard_and_cancel(tmp_path: Path) -> None:
    """A plan past --plan-ttl is 409 and expired; discard drops one; cancel stops a run."""
    spec = fleet_spec(clusters=3, svms=2, initial_servers=0, faults=Faults(latency=0.4))
    async with harness(tmp_path, spec) as h:
        old = await h.admin.start("apply", limit=["sim-0000"])
        old = await h.admin.until(old["id"], "awaiting_approval")
        h.clock.offset += timedelta(hours=25)
        late = await h.admin.post(
            f"/api/v1/runs/{old['id']}/approve", {"plan_hash": old["plan_hash"]}
        )
        assert late.status == 409
        assert "expired" in late.body["error"]
        assert (await h.admin.run(old["id"]))["state"] == "expired"

        dropped = await h.admin.start("apply", limit=["sim-0001"])
        dropped = await h.admin.until(dropped["id"], "awaiting_approval")
        discard = await h.clients["approve"].post(f"/api/v1/runs/{dropped['id']}/discard")
        assert discard.status == 200
        assert discard.body["state"] == "discarded"
        assert discard.body["ended_by"] == "approve-bot"

        running = await h.admin.start("check")
        await h.admin.until(running["id"], "running")
        cancel = await h.clients["operate"].post(f"/api/v1/runs/{running['id']}/cancel")
        assert cancel.status == 202
        stopped = await h.admin.until(running["id"], *DONE)
        assert stopped["state"] == "cancelled", stopped
        assert stopped["ended_by"] == "operate-bot"
        twice = await h.admin.post(f"/api/v1/runs/{running['id']}/cancel")
        assert twice.status == 409


async def test_bad_requests_name_what_is_wrong(tmp_path: Path) -> None:
    """Unknown options, commands, inventories and broken inventories: 400 with the reason."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1)) as h:
        (h.inventory.parent / "broken.yaml").write_text("version: 1\nclusterz: []\n")
        listing = await h.admin.get("/api/v1/inventories")
        broken = {i["name"]: i for i in listing.body["inventories"]}["broken.yaml"]
        assert not broken["valid"]
        assert any("clusterz" in p for p in broken["problems"])
        cases = [
            (
                {"inventory": "fleet.yaml", "command": "plan", "options": {"colour": 1}},
                "colour",
            ),
            ({"inventory": "fleet.yaml", "command": "nuke"}, "command"),
            ({"inventory": "../fleet.yaml", "command": "plan"}, "inventory"),
            ({"inventory": "missing.yaml", "command": "plan"}, "no such file"),
            ({"inventory": "broken.yaml", "command": "plan"}, "problem"),
            (
                {"inventory": "fleet.yaml", "command": "apply", "options": {"waves": "10%,5%"}},
                "waves",
            ),
            (
                {"inventory": "fleet.yaml", "command": "plan", "options": {"dry_run": "yes"}},
                "dry_run",
            ),
            ({"inventory": "fleet.yaml", "command": "plan", "extra": 1}, "extra"),
        ]
        for body, needle in cases:
            answer = await h.admin.post("/api/v1/runs", body)
            assert answer.status == 400, (body, answer.body)
            assert needle in answer.body["error"], (body, answer.body)
        answer = await h.admin.post("/api/v1/runs", {"inventory": "broken.yaml", "command": "plan"})
        assert any("clusterz" in p for p in answer.body["problems"])
        missing = await h.admin.get("/api/v1/runs/no-such-run")
        assert missing.status == 404
        assert (await h.admin.get("/api/v1/runs?state=bogus")).status == 400


async def test_streams_of_a_finished_run_leave_nothing_behind(tmp_path: Path) -> None:
    """Each event stream opened on a run that has ended replays it and ends; the service
    keeps nothing for it afterwards (a page left open on finished runs for months)."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1, initial_servers=0)) as h:
        run = await h.admin.until((await h.clients["operate"].start("check"))["id"], *DONE)
        for _ in range(3):
            events = await h.clients["read"].events(run["id"])
            assert events[-1]["event"] == "end", events
        assert run["id"] not in h.service.manager._changes  # what a leak would hold
