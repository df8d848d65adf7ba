"""10,000 targets on a fleet whose clusters refuse connections past a cap: bulkkm stays under it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bulkkm.simulator import Faults, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout
from tests.invariants import check_report, outcomes

CAP = 4
"""Requests in flight each cluster takes; the next one is dropped at the connection."""


async def test_ten_thousand_targets_never_exceed_any_clusters_concurrency(tmp_path: Path) -> None:
    """50 clusters x 100 SVMs x 2 servers: peak in flight <= concurrency <= cap; all added."""
    concurrency = CAP  # the tightest setting: one request more and the cluster refuses it
    spec = fleet_spec(
        clusters=50,
        svms=100,
        seed=17,
        faults=Faults(latency=0.001, jitter=0.002, max_in_flight=CAP),
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
        cluster_external_ratio=1.0,
    )
    async with asyncio.timeout(120), SimulatedFleet(spec) as fleet:
        inventory = inventory_for(
            fleet,
            tmp_path,
            concurrency=concurrency,
            key_servers=("kms-new.example.com", "kms-dr.example.com:5697"),
        )
        result = await run_rollout(fleet, inventory, tmp_path)
        peaks = {c.name: fleet.peak_in_flight(c.name) for c in fleet.clusters}
        refused = {c.name: fleet.refused(c.name) for c in fleet.clusters}
    targets = result.targets()
    assert len(targets) >= 10_000
    assert outcomes(result.lines) == {"added": len(targets)}
    check_report(result.lines)
    assert result.summary.exit_code == 0
    assert max(peaks.values()) <= concurrency, {n: p for n, p in peaks.items() if p > concurrency}
    # The bound is reached, so the test could catch a client that went past it.
    assert max(peaks.values()) == concurrency
    assert sum(refused.values()) == 0, {n: r for n, r in refused.items() if r}
