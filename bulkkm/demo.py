"""``bulkkm demo``: a rollout applied to a simulated fleet started in this process."""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bulkkm import engine
from bulkkm.inventory import load_inventory
from bulkkm.report import ReportWriter
from bulkkm.runner import run_with_console
from bulkkm.simulator import Faults, FleetSpec, SimulatedFleet

__all__ = ["demo"]

DEMO_SERVERS: Final = ("kms-new-1.example.com", "kms-new-2.example.com:5697")
# Realistic trouble that a rollout must ride out: slow answers, transient KMIP errors,
# dropped connections and POSTs whose answer is lost after they were applied.
DEMO_FAULTS: Final = Faults(
    latency=0.02, jitter=0.02, transient_rate=0.05, reset_rate=0.01, ambiguous_rate=0.01
)


def demo(*, clusters: int, svms: int, report: Path | None, overwrite: bool, quiet: bool) -> int:
    """Start a fleet, write its inventory, apply the rollout; return the run's exit code."""
    if report is None:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        report = Path("reports") / f"demo-{stamp}.jsonl"
        report.parent.mkdir(parents=True, exist_ok=True)
    writer = ReportWriter.create(report, overwrite=overwrite)
    return asyncio.run(_demo(clusters=clusters, svms=svms, report=writer, quiet=quiet))


async def _demo(*, clusters: int, svms: int, report: ReportWriter, quiet: bool) -> int:
    """The demo inside one event loop: simulator and engine side by side."""
    spec = FleetSpec(
        clusters=clusters,
        svms=svms,
        seed=2026,
        faults=DEMO_FAULTS,
        initial_servers=1,
        cluster_external_ratio=1.0,
    )
    with tempfile.TemporaryDirectory(prefix="bulkkm-demo-") as tmp:
        async with SimulatedFleet(spec) as fleet:
            path = fleet.write_inventory(
                Path(tmp) / "fleet.yaml", key_servers=DEMO_SERVERS, svms="all", cluster_scope=True
            )
            inventory = load_inventory(path)
            if not quiet:
                print(
                    f"simulated fleet: {clusters} clusters x {svms} SVMs on 127.0.0.1, TLS verified"
                )
            summary = await run_with_console(
                inventory, engine.Options(), report=report, quiet=quiet
            )
    return summary.exit_code
