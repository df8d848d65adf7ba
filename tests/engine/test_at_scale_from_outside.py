"""What an operator of a big fleet sees, shrunk to the size that still shows it.

Found by running bulkkm against thousands of simulated clusters (dead ones, hangs, 500s,
ambiguous POSTs) on a terminal and piped; each test runs the real command or the engine
against the simulator and reads what a person reads.
"""

from __future__ import annotations

import asyncio
import re
import signal
from datetime import datetime
from pathlib import Path

import orjson

from bulkkm.console import PROGRESS_EVERY_ENV
from bulkkm.simulator import Faults, FleetSpec, SimulatedFleet
from tests.cli import bulkkm, start
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


async def test_progress_counts_a_cluster_retrying_its_discovery_as_started(
    tmp_path: Path,
) -> None:
    """While a dead cluster's discovery is retried, progress says one cluster is still at work.

    The live clusters done, the dead one retrying for half a minute: every progress line
    said ``clusters_done`` = ``clusters_started``, nothing under way, as if the run hung.
    """
    spec = FleetSpec(
        clusters=3,
        svms=1,
        seed=5,
        headroom=1,
        cluster_external_ratio=1.0,
        cluster_faults={"sim-0000": Faults(dead=True)},
    )
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        process = await start(
            "apply",
            str(path),
            "--report",
            str(tmp_path / "r.jsonl"),
            env={PROGRESS_EVERY_ENV: "0.2"},
        )
        assert process.stderr is not None
        try:
            async with asyncio.timeout(15):  # the dead cluster is given up after ~20 s
                while True:
                    line = orjson.loads(await process.stderr.readline())
                    if line["event"] == "progress" and line["clusters_done"] == 2:
                        break
        finally:
            process.send_signal(signal.SIGINT)
            await process.communicate()
    assert line["clusters_started"] == 3, line
    assert line["done"] < line["total_estimated"], line


def _stamp(line: dict[str, object]) -> datetime:
    """A log line's time."""
    return datetime.fromisoformat(str(line["timestamp"]))


async def test_eta_after_a_pause_between_waves_is_that_of_the_wave_running(
    tmp_path: Path,
) -> None:
    """The ETA of a wave after a pause comes from the wave's own speed, not the run's average.

    The rate was the run's average since its start, pauses and waves found done included:
    at 3,000 clusters, resumed with --pause-between-waves 30, the last wave began at an
    ETA of 9,028 s and ended a minute later.
    """
    pause = 6
    spec = FleetSpec(
        clusters=8,
        svms=8,
        seed=5,
        headroom=1,
        cluster_external_ratio=1.0,
        faults=Faults(latency=0.4),
    )
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        code, _, err = await bulkkm(
            "apply",
            str(path),
            "--report",
            str(tmp_path / "r.jsonl"),
            "--waves",
            "1,100%",
            "--pause-between-waves",
            str(pause),
            env={PROGRESS_EVERY_ENV: "0.5"},
        )
    assert code == 0, err
    lines = [orjson.loads(line) for line in err.splitlines()]
    wave_2 = next(_stamp(e) for e in lines if e["event"] == "wave_started" and e["wave"] == 2)
    end = next(_stamp(e) for e in lines if e["event"] == "run_finished")
    assert (end - wave_2).total_seconds() < pause, "the wave is shorter than the pause before it"
    during = [
        e
        for e in lines
        if e["event"] == "progress"
        and e["eta_s"] is not None
        and e["done"] < e["total_estimated"]
        and (_stamp(e) - wave_2).total_seconds() >= 1.5
    ]
    assert during, lines
    etas = [(line["eta_s"], round((end - _stamp(line)).total_seconds(), 1)) for line in during]
    for eta, left in etas:
        # Within a factor of the truth, with room for a loaded machine (the first estimate of
        # a wave rests on a few completions): the averaged rate read 42 s with 2.9 s left.
        assert eta <= 3 * left + 5, etas
