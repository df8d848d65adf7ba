"""``bulkkm apply`` killed with SIGKILL again and again, each time resumed from the last report.

A chain is three kills at seeded random points (during discovery, after some target lines,
while POSTs are in flight), then a resume that runs to the end. Over the whole chain,
checked against the fleet's complete write log: no report line is torn but a killed run's
last, no target is reported ``added`` by two runs, every ``added`` was applied exactly once,
and the fleet ends with every target done. ``BULKKM_CHAOS_CHAINS=N`` runs N chains.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import start
from tests.engine.conftest import fleet_spec
from tests.invariants import check_invariants, check_report, key_managers, outcomes, servers_of

CHAINS: Final = int(os.environ.get("BULKKM_CHAOS_CHAINS") or 2)
KILL_POINTS: Final = ("discovery", "lines", "mid_post")
FAULTS: Final = Faults(
    latency=0.03, jitter=0.02, transient_rate=0.03, reset_rate=0.02, ambiguous_rate=0.05
)
"""Slow enough that POSTs are in flight when the kill comes; some ambiguous, some lost."""

Line = dict[str, Any]


def whole_lines(path: Path) -> list[Line]:
    """The report's lines; only the last may be torn (by the kill), and it is left out."""
    raw = path.read_bytes().split(b"\n")
    lines: list[Line] = []
    for number, text in enumerate(raw, 1):
        if not text:
            continue
        try:
            lines.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            assert number == len(raw), f"{path.name}:{number} is torn but not the last line"
    return lines


def fresh_targets(path: Path) -> int:
    """Target lines this run wrote itself (not carried over from the report it resumes)."""
    if not path.exists():
        return 0
    return sum(
        1 for line in whole_lines(path) if line["type"] == "target" and not line.get("carried_over")
    )


async def wait_until(condition: Callable[[], bool], process: asyncio.subprocess.Process) -> None:
    """Poll ``condition`` until it holds or the process ends on its own."""
    async with asyncio.timeout(60):
        while True:
            if condition() or process.returncode is not None:
                return
            await asyncio.sleep(0.002)


async def apply(inventory: Path, report: Path, resume: Path | None) -> asyncio.subprocess.Process:
    """Start ``bulkkm apply`` (resuming ``resume`` if given)."""
    args = ["apply", str(inventory), "--report", str(report), "-q"]
    if resume is not None:
        args += ["--resume", str(resume)]
    return await start(*args, stdout=asyncio.subprocess.DEVNULL)


async def kill_at(
    point: str,
    rng: random.Random,
    fleet: SimulatedFleet,
    process: asyncio.subprocess.Process,
    report: Path,
) -> bool:
    """SIGKILL the run at ``point``; whether it was still running when killed."""
    requests = len(fleet.request_log)

    def new(method: str) -> int:
        return sum(1 for r in fleet.request_log[requests:] if r.method == method)

    match point:
        case "discovery":
            await wait_until(lambda: new("GET") >= 1, process)
        case "lines":
            n = rng.randint(1, 12)
            await wait_until(lambda: fresh_targets(report) >= n, process)
        case _:
            n = rng.randint(1, 6)
            # The POST has just arrived: the cluster is still sleeping its latency on it.
            await wait_until(lambda: new("POST") >= n, process)
    running = process.returncode is None
    if running:
        process.send_signal(signal.SIGKILL)
    await process.wait()
    return running


@pytest.mark.parametrize("seed", range(1, CHAINS + 1))
async def test_chain_of_kills_and_resumes_completes_without_writing_twice(
    tmp_path: Path, seed: int
) -> None:
    """Three SIGKILLs at random points, each resumed: the fleet ends complete, no double write."""
    rng = random.Random(seed)
    spec = fleet_spec(clusters=8, svms=5, seed=seed, faults=FAULTS, initial_servers=0)
    async with asyncio.timeout(150), SimulatedFleet(spec) as fleet:
        inventory = fleet.write_inventory(
            tmp_path / "fleet.yaml",
            key_servers=("kms-new.example.com", "kms-dr.example.com:5697"),
            concurrency=2,
        )
        before = fleet.state()
        reports: list[Path] = []
        points = rng.sample(KILL_POINTS, k=len(KILL_POINTS))
        killed = 0
        for step, point in enumerate(points):
            report = tmp_path / f"run{step}.jsonl"
            process = await apply(inventory, report, reports[-1] if reports else None)
            killed += await kill_at(point, rng, fleet, process, report)
            reports.append(report)
            lines = whole_lines(report)
            assert lines[0]["type"] == "run"
            if step:
                assert lines[0]["resumed_from"] == whole_lines(reports[-2])[0]["run_id"]
        assert killed >= 2, f"only {killed} of {len(points)} kills landed before the run ended"

        final = tmp_path / "final.jsonl"
        process = await apply(inventory, final, reports[-1])
        _, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        reports.append(final)
        after = fleet.state()

        last = whole_lines(final)
        check_report(last)
        assert set(outcomes(last)) <= {"added", "present"}
        check_invariants(
            inventory=load_inventory(inventory),
            before=before,
            after=after,
            writes=fleet.write_log,
            report=last,
        )

    applied = Counter(
        (w.cluster, w.key_manager_uuid, w.server)
        for w in fleet.write_log
        if w.applied and w.method == "POST"
    )
    kms = key_managers(after)
    claimed: Counter[tuple[str, str | None, str]] = Counter()
    for path in reports:
        lines = whole_lines(path)
        targets = [line for line in lines if line["type"] == "target"]
        keys = Counter((t["cluster"], t["svm"], t["server"]) for t in targets)
        assert max(keys.values(), default=1) == 1, f"{path.name}: a target reported twice"
        for t in targets:
            where = f"{path.name}: {t['cluster']}/{t['svm']}/{t['server']}"
            if t["outcome"] in ("added", "present"):
                assert t["server"] in servers_of(kms.get((t["cluster"], t["svm"]))), where
            if t["outcome"] == "added" and not t.get("carried_over"):
                claimed[t["cluster"], t["svm"], t["server"]] += 1
                assert applied[t["cluster"], t["key_manager_uuid"], t["server"]] == 1, where
    assert max(claimed.values(), default=1) == 1, "two runs of the chain both added a target"
    assert claimed, "no run of the chain added anything: the kills came too late to matter"
