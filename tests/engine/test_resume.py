"""``--resume`` as operators use it: the cluster is the truth, the old report only a witness."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import orjson

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults, FleetSpec, SimulatedFleet
from tests.cli import bulkkm, read_report, start, wait_for_lines
from tests.engine.conftest import fleet_spec
from tests.invariants import check_invariants, outcomes


def spec(**kwargs: Any) -> FleetSpec:
    """A small fleet with no key server yet."""
    kwargs.setdefault("clusters", 3)
    kwargs.setdefault("svms", 2)
    kwargs.setdefault("seed", 11)
    return fleet_spec(initial_servers=0, **kwargs)


def targets(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The target lines of a report."""
    return [line for line in lines if line["type"] == "target"]


async def test_resume_against_a_fleet_that_lost_its_servers_adds_them_again(
    tmp_path: Path,
) -> None:
    """Old `added` lines are not carried when the cluster lacks the server: it is re-added."""
    first = tmp_path / "first.jsonl"
    async with SimulatedFleet(spec()) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        assert (await bulkkm("apply", str(inventory), "--report", str(first), "-q")).code == 0
    # The same fleet again (same names and key-manager uuids), as it was before the rollout.
    async with SimulatedFleet(spec()) as fresh:
        inventory = fresh.write_inventory(tmp_path / "fleet-again.yaml")
        before = fresh.state()
        second = tmp_path / "second.jsonl"
        result = await bulkkm(
            "apply", str(inventory), "--report", str(second), "--resume", str(first)
        )
        assert result.code == 0, result.err
        lines = read_report(second)
        check_invariants(
            inventory=load_inventory(inventory),
            before=before,
            after=fresh.state(),
            writes=fresh.write_log,
            report=lines,
        )
        assert set(outcomes(lines)) == {"added"}
        assert not any(t.get("carried_over") for t in targets(lines))
        assert "resume_from_other_inventory" in result.err  # the addresses changed
        check = await bulkkm("check", str(inventory))
        assert check.code == 0, check.err


async def test_resume_from_a_killed_resume_keeps_the_chain(tmp_path: Path) -> None:
    """A resumed run killed before its carried lines: the next resume still knows who added what."""
    async with SimulatedFleet(spec(clusters=4)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        first = tmp_path / "first.jsonl"
        assert (await bulkkm("apply", str(inventory), "--report", str(first), "-q")).code == 0
        # Discovery hangs, so the kill lands during it whatever the machine's speed.
        for cluster in fleet.clusters:
            fleet.set_faults(cluster.name, Faults(hang_rate=1.0))
        seen = len(fleet.request_log)
        second = tmp_path / "second.jsonl"
        process = await start(
            "apply", str(inventory), "--report", str(second), "--resume", str(first), "-q"
        )
        await wait_for_lines(second, 1, deadline=30)
        async with asyncio.timeout(30):
            while len(fleet.request_log) == seen:  # noqa: ASYNC110 -- another process sends
                await asyncio.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert [line["type"] for line in read_report(second)] == ["run"]  # killed in discovery
        for cluster in fleet.clusters:
            fleet.set_faults(cluster.name, Faults())
        writes = len(fleet.write_log)
        third = tmp_path / "third.jsonl"
        result = await bulkkm(
            "apply", str(inventory), "--report", str(third), "--resume", str(second), "-q"
        )
        assert result.code == 0, result.err
        assert len(fleet.write_log) == writes
    assert read_report(third)[0]["resumed_from"] == read_report(second)[0]["run_id"]
    lines = targets(read_report(third))
    assert lines
    assert {t["outcome"] for t in lines} == {"added"}
    assert all(t.get("carried_over") for t in lines)


async def test_resume_with_limit_keeps_every_other_clusters_lines(tmp_path: Path) -> None:
    """--resume --limit: the new report still holds the outcome of clusters outside the limit."""
    async with SimulatedFleet(spec()) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        first = tmp_path / "first.jsonl"
        assert (await bulkkm("apply", str(inventory), "--report", str(first), "-q")).code == 0
        second = tmp_path / "second.jsonl"
        result = await bulkkm(
            "apply",
            str(inventory),
            "--report",
            str(second),
            "--resume",
            str(first),
            "--limit",
            "sim-0001",
            "-q",
        )
        assert result.code == 0, result.err
    old = {(t["cluster"], t["svm"], t["server"]) for t in targets(read_report(first))}
    new = {(t["cluster"], t["svm"], t["server"]) for t in targets(read_report(second))}
    assert new == old
    assert {t["outcome"] for t in targets(read_report(second))} == {"added"}


async def test_a_malformed_old_report_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """A naive or impossible timestamp in the resumed report: exit 2, one line, no request."""
    async with SimulatedFleet(spec()) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        first = tmp_path / "first.jsonl"
        assert (await bulkkm("apply", str(inventory), "--report", str(first), "-q")).code == 0
        lines = read_report(first)
        requests = len(fleet.request_log)
        for bad in ("2026-11-27T10:00:00", "2026-13-45T99:00:00Z"):
            edited = [dict(line) for line in lines]
            next(t for t in edited if t["type"] == "target")["started_at"] = bad
            broken = tmp_path / "broken.jsonl"
            broken.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in edited))
            result = await bulkkm(
                "apply",
                str(inventory),
                "--report",
                str(tmp_path / "second.jsonl"),
                "--resume",
                str(broken),
                "--overwrite",
            )
            assert result.code == 2, result.err
            assert "Traceback" not in result.err
            assert "broken.jsonl:2: malformed target line" in result.err
        assert len(fleet.request_log) == requests


async def test_a_report_still_being_written_is_not_resumed_from(tmp_path: Path) -> None:
    """--resume from the report of a run still going: exit 2, one line, nothing sent by the
    second run (it would race the first on the same clusters); once the first has ended
    (Ctrl-C completes its report), the resume goes ahead and writes nothing twice."""
    async with SimulatedFleet(spec(clusters=2, svms=5, faults=Faults(latency=0.8))) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        first = tmp_path / "first.jsonl"  # 5 POSTs one after another a cluster: ~5 s
        running = await start("apply", str(inventory), "--report", str(first), "-q")
        await wait_for_lines(first, 1)  # the run line: the report is open, the run going
        second = tmp_path / "second.jsonl"
        refused = await bulkkm(
            "apply", str(inventory), "--report", str(second), "--resume", str(first)
        )
        assert refused.code == 2, refused.err
        assert "first.jsonl is still being written by a running bulkkm" in refused.err
        assert len(refused.err.strip().splitlines()) == 1, refused.err
        assert not second.exists()
        running.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            await running.wait()
        before = fleet.state()
        resumed = await bulkkm(
            "apply", str(inventory), "--report", str(second), "--resume", str(first), "-q"
        )
        assert resumed.code == 0, resumed.err
        check_invariants(
            inventory=load_inventory(inventory),
            before=before,
            after=fleet.state(),
            writes=fleet.write_log,
            report=read_report(second),
        )


async def test_a_plan_made_after_an_interrupt_resumed_keeps_every_target_in_the_newest_report(
    tmp_path: Path,
) -> None:
    """apply --plan P1 interrupted; plan P2 of what is left; apply --plan P2 --resume: the
    targets P1's run added, which P2 leaves alone on the same clusters, are carried, so the
    newest report holds every target of the fleet; nothing is written twice."""
    async with SimulatedFleet(spec(clusters=2, svms=6, faults=Faults(latency=0.2))) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        p1, p2 = tmp_path / "p1.json", tmp_path / "p2.json"
        assert (await bulkkm("plan", str(inventory), "--out", str(p1), "-q")).code == 0
        first = tmp_path / "first.jsonl"
        running = await start("apply", "--plan", str(p1), "--report", str(first), "-q")
        await wait_for_lines(first, 5)  # the run line and a few targets per cluster
        running.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            await running.wait()
        done = [t for t in targets(read_report(first)) if t["outcome"] == "added"]
        added = {(t["cluster"], t["svm"]) for t in done}
        assert added
        assert (await bulkkm("plan", str(inventory), "--out", str(p2), "-q")).code == 0
        second = tmp_path / "second.jsonl"
        resumed = await bulkkm(
            "apply", "--plan", str(p2), "--resume", str(first), "--report", str(second), "-q"
        )
        assert resumed.code == 0, resumed.err
        check = await bulkkm("check", str(inventory), "--report", str(tmp_path / "c.jsonl"), "-q")
        assert check.code == 0, check.err
    lines = targets(read_report(second))
    every = {(t["cluster"], t["svm"]) for t in targets(read_report(tmp_path / "c.jsonl"))}
    assert {(t["cluster"], t["svm"]) for t in lines} == every
    carried = {(t["cluster"], t["svm"]) for t in lines if t.get("carried_over")}
    assert carried == {key for key in added if key in every}
    assert len(fleet.write_log) == len(every)  # each server written once, over both runs
