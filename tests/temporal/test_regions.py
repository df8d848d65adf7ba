"""Regional workers on Temporal: two regions' fleets, a worker each, one coordinator."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import yaml

from bulkkm.inventory import load_inventory
from tests.cli import bulkkm, read_report, start
from tests.invariants import check_invariants, check_report, outcomes
from tests.temporal.conftest import REGIONS, of_region, two_regions

DEADLINE = 90.0


@contextlib.asynccontextmanager
async def worker(
    address: str, region: str, inventory: Path, log: Path, env: dict[str, str | None] | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``bulkkm worker`` for one region, its JSON log lines in ``log``; stopped on the way out."""
    with log.open("ab") as sink:
        process = await start(
            "worker",
            "--temporal",
            address,
            "--region",
            region,
            "--inventory",
            str(inventory),
            "--log-format",
            "json",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink.fileno(),
            env=env,
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()


def clusters_worked(log: Path) -> set[str]:
    """The clusters a worker's log says it ran an activity for."""
    worked = set()
    for raw in log.read_bytes().splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            line = orjson.loads(raw)
            if line.get("event") == "cluster_activity_started":
                worked.add(str(line["cluster"]))
    return worked


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
