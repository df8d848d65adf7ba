"""Regional workers on Temporal: two regions' fleets, a worker each, one coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Any

import orjson
import yaml

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults
from tests.cli import bulkkm, read_report, start
from tests.invariants import check_invariants, check_report, outcomes
from tests.temporal.conftest import REGIONS, of_region, two_regions, worker

DEADLINE = 90.0


def logged(log: Path, event: str) -> list[dict[str, Any]]:
    """The lines of one event in a worker's JSON log."""
    found = []
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if isinstance(line, dict) and line.get("event") == event:
                found.append(line)
    return found


def activities_started(log: Path) -> list[dict[str, Any]]:
    """The ``chunk_activity_started`` lines of a worker's JSON log."""
    return logged(log, "chunk_activity_started")


def clusters_worked(log: Path) -> set[str]:
    """The clusters a worker's log says it ran an activity for."""
    return {str(name) for line in activities_started(log) for name in line["clusters"]}


def check_regions(
    fleets: dict[str, Any], inventory: Path, lines: list[dict[str, Any]], befores: dict[str, Any]
) -> None:
    """The merged report's own promises, then every invariant per region's fleet."""
    check_report(lines)
    for region in REGIONS:
        fleet = fleets[region]
        own = load_inventory(inventory.parent / region / "fleet.yaml")
        check_invariants(
            inventory=own,
            before=befores[region],
            after=fleet.state(),
            writes=fleet.write_log,
            report=of_region(lines, region),
        )


async def test_two_regions_one_report_each_cluster_worked_by_its_region(
    temporal_server: str, tmp_path: Path
) -> None:
    """Two fleets, a worker per region: one report with every target; no cross-region work."""
    async with two_regions(tmp_path, clusters=3, svms=2) as (fleets, inventory):
        befores = {region: fleet.state() for region, fleet in fleets.items()}
        logs = {region: tmp_path / f"worker-{region}.log" for region in REGIONS}
        async with contextlib.AsyncExitStack() as stack:
            for region in REGIONS:
                await stack.enter_async_context(
                    worker(temporal_server, region, inventory, logs[region])
                )
            report = tmp_path / "report.jsonl"
            result = await bulkkm(
                "apply",
                str(inventory),
                "--temporal",
                temporal_server,
                "--report",
                str(report),
                deadline=DEADLINE,
            )
        assert result.code == 0, result.err
        assert "workflow bulkkm-run-" in result.err
        lines = read_report(report)
        check_regions(fleets, inventory, lines, befores)
        assert set(outcomes(lines)) == {"added"}
        for region in REGIONS:
            targets = [t for t in of_region(lines, region) if t["type"] == "target"]
            assert targets, f"no target of {region}"
            worked = clusters_worked(logs[region])
            assert worked == {
                c.name for c in load_inventory(inventory).clusters if c.region == region
            }
            # Each worker read the inventory once, not once per cluster.
            assert len(logged(logs[region], "inventory_loaded")) == 1


async def test_a_cluster_without_a_region_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    """--temporal needs every cluster's region: exit 2, no report, nothing started."""
    async with two_regions(tmp_path, clusters=1, svms=1) as (fleets, inventory):
        data = yaml.safe_load(inventory.read_text())
        data["groups"]["us"]["region"] = None  # null: no region, whatever is inherited
        inventory.write_text(yaml.safe_dump(data))
        report = tmp_path / "report.jsonl"
        result = await bulkkm(
            "apply", str(inventory), "--temporal", "127.0.0.1:1", "--report", str(report)
        )
        assert result.code == 2, result.err
        assert "us-sim-0000 have none" in result.err
        assert not report.exists()
        assert not any(fleet.write_log for fleet in fleets.values())


async def test_attach_needs_temporal() -> None:
    """--attach without --temporal is a usage error."""
    result = await bulkkm("apply", "--attach", "bulkkm-run-x", "--report", "r.jsonl")
    assert result.code == 2
    assert "--attach needs --temporal" in result.err


async def workflow_of(coordinator: asyncio.subprocess.Process) -> str:
    """The workflow id the coordinator prints on stderr once it has started the rollout."""
    assert coordinator.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await coordinator.stderr.readline()).decode()
            assert line, "the coordinator ended without starting a workflow"
            if "re-attach with --attach " in line:
                return line.rsplit("--attach ", 1)[1].strip(" )\n")


async def until_logged(log: Path, *, clusters: int) -> None:
    """Wait until a worker's log shows activities started for ``clusters`` clusters."""
    async with asyncio.timeout(30):
        while True:
            if len(clusters_worked(log)) >= clusters:
                return
            await asyncio.sleep(0.05)


async def test_a_killed_worker_and_a_killed_coordinator_still_make_one_complete_report(
    temporal_server: str, tmp_path: Path
) -> None:
    """SIGKILL a worker mid-cluster and the coordinator, restart and re-attach: one report."""
    slow = Faults(latency=0.15)
    async with two_regions(tmp_path, clusters=3, svms=3, faults=slow) as (fleets, inventory):
        befores = {region: fleet.state() for region, fleet in fleets.items()}
        logs = {region: tmp_path / f"worker-{region}.log" for region in REGIONS}
        report = tmp_path / "report.jsonl"
        env: dict[str, str | None] = {"BULKKM_TEMPORAL_HEARTBEAT_TIMEOUT": "3"}
        async with contextlib.AsyncExitStack() as stack:
            eu = await stack.enter_async_context(
                worker(temporal_server, "eu", inventory, logs["eu"])
            )
            await stack.enter_async_context(worker(temporal_server, "us", inventory, logs["us"]))
            coordinator = await start(
                "apply",
                str(inventory),
                "--temporal",
                temporal_server,
                "--report",
                str(report),
                "--log-format",
                "json",
                env=env,
                stdout=asyncio.subprocess.DEVNULL,
            )
            workflow = await workflow_of(coordinator)
            await until_logged(logs["eu"], clusters=1)
            eu.send_signal(signal.SIGKILL)
            await eu.wait()
            coordinator.send_signal(signal.SIGKILL)
            await coordinator.wait()
            written = read_report(report)
            assert not any(line["type"] == "summary" for line in written)
            await stack.enter_async_context(worker(temporal_server, "eu", inventory, logs["eu"]))
            result = await bulkkm(
                "apply",
                "--temporal",
                temporal_server,
                "--attach",
                workflow,
                "--report",
                str(report),
                deadline=DEADLINE,
            )
        assert result.code == 0, result.err
        lines = read_report(report)
        # Continued, not rewritten: the lines written before the kill are all there, in order
        # (only the run line's target count was filled in since).
        assert {**lines[0], "targets": None} == written[0]
        assert lines[1 : len(written)] == written[1:]
        retried = [line for line in activities_started(logs["eu"]) if line["attempt"] > 1]
        assert retried, "the killed worker's cluster was not retried"
        check_regions(fleets, inventory, lines, befores)
        assert set(outcomes(lines)) <= {"added", "present"}


async def test_one_cluster_listed_in_two_regions_is_written_under_one_name_only(
    temporal_server: str, tmp_path: Path
) -> None:
    """The same cluster under a second name in the other region: refused as in-process."""
    async with two_regions(tmp_path, clusters=2, svms=2) as (fleets, inventory):
        data = yaml.safe_load(inventory.read_text())
        original = next(c for c in data["clusters"] if c["name"] == "eu-sim-0000")
        # The same cluster at another address (the inventory refuses the same one twice).
        port = str(original["address"]).rpartition(":")[2]
        alias = {
            **original,
            "name": "alias-of-eu-sim-0000",
            "address": f"localhost:{port}",
            "region": "us",
        }
        # And one the us worker cannot identify (its CA is not the one that signed the
        # cluster's certificate): a failed discovery, not a cluster worked unclaimed.
        other = next(c for c in data["clusters"] if c["name"] == "eu-sim-0001")
        port = str(other["address"]).rpartition(":")[2]
        untrusted = {**other, "name": "untrusted", "address": f"localhost:{port}", "groups": ["us"]}
        data["clusters"] += [alias, untrusted]
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        logs = {region: tmp_path / f"worker-{region}.log" for region in REGIONS}
        report = tmp_path / "report.jsonl"
        async with contextlib.AsyncExitStack() as stack:
            for region in REGIONS:
                await stack.enter_async_context(
                    worker(temporal_server, region, inventory, logs[region])
                )
            result = await bulkkm(
                "apply",
                str(inventory),
                "--temporal",
                temporal_server,
                "--report",
                str(report),
                deadline=DEADLINE,
            )
        assert result.code == 1, result.err
        lines = read_report(report)
        check_report(lines)
        names = {original["name"], alias["name"]}
        refused = [
            line
            for line in lines
            if line["type"] == "cluster" and line.get("reason") == "duplicate_cluster"
        ]
        assert len(refused) == 1
        assert refused[0]["cluster"] in names
        (kept,) = names - {refused[0]["cluster"]}
        assert kept in refused[0]["error"]["message"]
        worked = [t for t in lines if t["type"] == "target" and t["cluster"] in names]
        assert worked
        assert {t["cluster"] for t in worked} == {kept}
        assert {t["outcome"] for t in worked} == {"added"}
        (failed,) = [line for line in lines if line.get("reason") == "discovery_failed"]
        assert failed["cluster"] == "untrusted"
        assert failed["error"]["category"] == "tls"
        # Every key manager of that cluster was written once, under one name.
        writes = [(w.cluster, w.key_manager_uuid, w.server) for w in fleets["eu"].write_log]
        assert len(writes) == len(set(writes))
