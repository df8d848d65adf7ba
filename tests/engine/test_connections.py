"""A cluster's TLS connections: opened as requests need them, later ones resuming the first."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bulkkm.engine._gate import Gate
from bulkkm.inventory import Cluster
from bulkkm.ontap import OntapClient, TlsContexts
from bulkkm.simulator import Faults, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for


@contextlib.asynccontextmanager
async def _one_cluster(tmp_path: Path, concurrency: int) -> AsyncIterator[Cluster]:
    """One simulated cluster (answers 50 ms late, so requests overlap), as the inventory has it."""
    spec = fleet_spec(clusters=1, svms=2, seed=5, faults=Faults(latency=0.05))
    async with SimulatedFleet(spec) as fleet:
        yield inventory_for(fleet, tmp_path, concurrency=concurrency).clusters[0]


async def _connections(cluster: Cluster, rounds: tuple[int, ...]) -> Mapping[str, object]:
    """Send rounds of GETs at once (sizes ``rounds``); the client's count of its connections."""
    with capture_logs() as logs:
        async with OntapClient.connect(
            cluster, gate=Gate(cluster.limits), read_only=True, tls=TlsContexts()
        ) as client:
            for size in rounds:
                await asyncio.gather(*(client.version() for _ in range(size)))
    (line,) = (entry for entry in logs if entry["event"] == "tls_connections")
    return line


@pytest.mark.parametrize(("rounds", "handshakes"), [((1, 1, 1), 1), ((1, 4, 4), 4), ((2,), 2)])
async def test_connections_are_opened_only_as_requests_need_them(
    tmp_path: Path, rounds: tuple[int, ...], handshakes: int
) -> None:
    """Requests one after another share one connection; never more than are in flight."""
    async with asyncio.timeout(30), _one_cluster(tmp_path, concurrency=4) as cluster:
        line = await _connections(cluster, rounds)
    assert line["handshakes"] == handshakes


async def test_further_connections_resume_the_first_session(tmp_path: Path) -> None:
    """After a first exchange, a cluster's new connections resume its TLS session."""
    async with asyncio.timeout(30), _one_cluster(tmp_path, concurrency=4) as cluster:
        line = await _connections(cluster, (1, 4))
    assert line["handshakes"] == 4
    assert line["resumed"] == 3


async def test_sessions_are_not_shared_between_clusters(tmp_path: Path) -> None:
    """A second cluster's first connection is a full handshake, even on one run's context."""
    spec = fleet_spec(clusters=2, svms=1, seed=5)
    tls = TlsContexts()
    async with asyncio.timeout(30), SimulatedFleet(spec) as fleet:
        clusters = inventory_for(fleet, tmp_path).clusters
        with capture_logs() as logs:
            for cluster in clusters:
                async with OntapClient.connect(
                    cluster, gate=Gate(cluster.limits), read_only=True, tls=tls
                ) as client:
                    await client.version()
    lines = [entry for entry in logs if entry["event"] == "tls_connections"]
    assert [(e["handshakes"], e["resumed"]) for e in lines] == [(1, 0), (1, 0)]
