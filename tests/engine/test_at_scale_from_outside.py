"""What an operator of a big fleet sees, shrunk to the size that still shows it.

Found by running bulkkm against thousands of simulated clusters (dead ones, hangs, 500s,
ambiguous POSTs) on a terminal and piped; each test runs the real command or the engine
against the simulator and reads what a person reads.
"""

from __future__ import annotations

import re
from pathlib import Path

from bulkkm.simulator import Faults, FleetSpec, SimulatedFleet
from tests.cli import bulkkm
from tests.engine.conftest import inventory_for, run_rollout

DEAD = 12
"""Dead clusters: more than the summary names on one line (10)."""


def _dead_and_full_fleet() -> FleetSpec:
    """Dead clusters first, then as many live ones whose key managers are all full."""
    clusters = 2 * DEAD
    return FleetSpec(
        clusters=clusters,
        svms=1,
        seed=5,
        initial_servers=4,
        cluster_external_ratio=1.0,
        cluster_faults={f"sim-{i:04d}": Faults(dead=True) for i in range(DEAD)},
    )


async def test_summarize_all_lists_many_clusters_one_per_line_in_name_order(
    tmp_path: Path,
) -> None:
    """--all on a report with many unreachable and blocked clusters: a row per cluster, sorted.

    It printed each list as one line (15,000 characters for 1,262 clusters), the names in
    the order the clusters happened to end.
    """
    async with SimulatedFleet(_dead_and_full_fleet()) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        run = await run_rollout(fleet, inventory, tmp_path, check=False)
    report = tmp_path / "report.jsonl"
    assert sum(line["type"] == "cluster" for line in run.lines) == DEAD

    code, out, _ = await bulkkm("report", "summarize", str(report), "--all")
    assert code == 0, out
    lines = out.splitlines()
    dead = [f"sim-{i:04d}" for i in range(DEAD)]
    start = lines.index(f"  unreachable: {DEAD}")
    assert lines[start + 1 : start + 1 + DEAD] == [f"    {name}" for name in dead]
    header = next(line for line in lines if line.startswith("clusters with targets left:"))
    assert header == f"clusters with targets left: {DEAD} (targets  cluster)"
    first = lines.index(header) + 1
    rows = [(name, int(n)) for n, name in (row.split() for row in lines[first : first + DEAD])]
    assert {name for name, _ in rows} == {f"sim-{i:04d}" for i in range(DEAD, 2 * DEAD)}
    assert rows == sorted(rows, key=lambda row: (-row[1], row[0]))

    code, out, _ = await bulkkm("report", "summarize", str(report))
    shown = ", ".join(dead[:3])
    assert re.search(rf"^  unreachable: {DEAD} \({shown}, \.\.\. and {DEAD - 3} more\)$", out, re.M)
