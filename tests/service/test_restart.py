"""``bulkkm serve`` killed with SIGKILL mid-run: at restart the run is interrupted, and a retry
finishes the fleet without writing anything twice."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import aiohttp

from bulkkm.inventory import load_inventory
from bulkkm.service import Scope
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import read_report, start, wait_for_lines
from tests.engine.conftest import NEW_SERVERS, fleet_spec
from tests.invariants import (
    check_invariants,
    check_report,
    expected_targets,
    key_managers,
    servers_of,
)
from tests.service.conftest import DONE, Client, add_token


async def serve(data: Path, inventories: Path) -> tuple[asyncio.subprocess.Process, str]:
    """``bulkkm serve`` on a free loopback port, and its URL once it listens."""
    process = await start(
        "serve", "--data", str(data), "--inventories", str(inventories), "--listen", "127.0.0.1:0"
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        first = (await process.stdout.readline()).decode()
    assert "listening on " in first, first
    return process, first.split("listening on ")[1].strip()


async def test_kill_9_mid_run_then_retry_finishes_without_writing_twice(tmp_path: Path) -> None:
    """SIGKILL while the approved apply runs; restart: interrupted; retry: the fleet is done."""
    spec = fleet_spec(clusters=4, svms=3, seed=7, initial_servers=0, faults=Faults(latency=0.25))
    data, folder = tmp_path / "data", tmp_path / "inventories"
    folder.mkdir()
    async with asyncio.timeout(120), SimulatedFleet(spec) as fleet:
        inventory = fleet.write_inventory(
            folder / "fleet.yaml", key_servers=NEW_SERVERS, concurrency=1
        )
        token = await add_token(data, "ops", Scope.ADMIN)
        before = fleet.state()
        process, url = await serve(data, folder)
        async with aiohttp.ClientSession() as session:
            api = Client(session, url, token)
            run = await api.start("apply")
            run = await api.until(run["id"], "awaiting_approval")
            approve = f"/api/v1/runs/{run['id']}/approve"
            assert (await api.post(approve, {"plan_hash": run["plan_hash"]})).status == 202
            report = data / "runs" / run["id"] / "report.jsonl"
            await wait_for_lines(report, 3)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            assert process.stderr is not None
            logs = (await process.stderr.read()).decode()
        killed = read_report(report)
        assert not any(line["type"] == "summary" for line in killed)

        process, url = await serve(data, folder)
        try:
            async with aiohttp.ClientSession() as session:
                api = Client(session, url, token)
                old = await api.run(run["id"])
                assert old["state"] == "interrupted", old
                assert old["counts"], old  # what the cut report shows
                answer = await api.post(f"/api/v1/runs/{run['id']}/retry")
                assert answer.status == 201, answer.body
                retry = await api.until(answer.body["id"], "awaiting_approval")
                writes = len(fleet.write_log)
                ok = await api.post(
                    f"/api/v1/runs/{retry['id']}/approve", {"plan_hash": retry["plan_hash"]}
                )
                assert ok.status == 202
                retry = await api.until(retry["id"], *DONE, deadline=60)
                assert retry["state"] == "succeeded", retry
                lines = (await api.get(f"/api/v1/runs/{retry['id']}/report")).raw
        finally:
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                await process.wait()
            assert process.stderr is not None
            logs += (await process.stderr.read()).decode()
        assert process.returncode == 0, logs[-2000:]
        final = read_report(data / "runs" / retry["id"] / "report.jsonl")
        assert lines.count(b"\n") == len(final)
        check_report(final)
        assert final[0]["resumed_from"] == killed[0]["run_id"]
        # An approved plan's report covers the key managers the plan changes (and, resumed,
        # the clusters it leaves out): the lines it has are checked, the fleet as a whole below.
        keys = {(t["cluster"], t["svm"], t["server"]) for t in final if t["type"] == "target"}
        check_invariants(
            inventory=load_inventory(inventory),
            before=before,
            after=fleet.state(),
            writes=fleet.write_log[writes:],
            report=final,
            expected=keys,
        )
        kms = key_managers(fleet.state())
        for cluster, svm, server in expected_targets(load_inventory(inventory), before, set()):
            assert server in servers_of(kms.get((cluster, svm))), (cluster, svm, server)
        assert {t["outcome"] for t in final if t["type"] == "target"} <= {"added", "present"}
        applied = Counter(
            (w.cluster, w.key_manager_uuid, w.server)
            for w in fleet.write_log
            if w.applied and w.method == "POST"
        )
        assert max(applied.values()) == 1  # over both runs: nothing written twice
        assert token not in logs
