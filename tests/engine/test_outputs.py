"""Report and plan files as operators meet them: checked before anything is sent, kept safe."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import bulkkm, read_report, start, wait_for_lines
from tests.engine.conftest import fleet_spec
from tests.invariants import outcomes


def one_line_error(stderr: str) -> str:
    """The single line a refused command prints; no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


async def test_existing_report_is_refused_and_kept(tmp_path: Path) -> None:
    """An existing report (the one you would resume from) is not overwritten without --overwrite."""
    async with SimulatedFleet(fleet_spec(clusters=2, svms=2, initial_servers=0)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        report = tmp_path / "r.jsonl"
        report.write_text("precious\n")
        result = await bulkkm("apply", str(inventory), "--report", str(report))
        assert result.code == 2
        assert "exists" in one_line_error(result.err)
        assert report.read_text() == "precious\n"
        assert fleet.request_log == []
        again = await bulkkm("apply", str(inventory), "--report", str(report), "--overwrite")
        assert again.code == 0, again.err
        assert read_report(report)[-1]["type"] == "summary"


async def test_outputs_that_cannot_be_written_are_refused_before_any_request(
    tmp_path: Path,
) -> None:
    """A missing folder, a folder, a symlink, the inventory itself, a device or a pipe (even
    with --overwrite): one line, exit 2, no request."""
    async with SimulatedFleet(fleet_spec(clusters=2, svms=2, initial_servers=0)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        victim = tmp_path / "victim.txt"
        victim.write_text("do not touch\n")
        victim.chmod(0o644)
        link = tmp_path / "link.jsonl"
        link.symlink_to(victim)
        alias = tmp_path / "alias.yaml"
        alias.hardlink_to(inventory)
        pipe = tmp_path / "pipe.jsonl"
        os.mkfifo(pipe)  # nobody reads it: opening it to write would wait forever
        cases = {
            str(tmp_path / "missing" / "r.jsonl"): "does not exist",
            str(tmp_path): "directory",
            str(link): "symbolic link",
            str(alias): "same file",
            str(inventory): "same file",
            "/dev/null": "not a regular file",
            "/dev/full": "not a regular file",
            str(pipe): "not a regular file",
        }
        for path, reason in cases.items():
            result = await bulkkm("apply", str(inventory), "--report", path, "--overwrite")
            assert result.code == 2, (path, result.err)
            assert reason in one_line_error(result.err), (path, result.err)
        plan = await bulkkm("plan", str(inventory), "--out", str(tmp_path / "no" / "p.json"))
        assert plan.code == 2
        assert "does not exist" in one_line_error(plan.err)
        assert victim.read_text() == "do not touch\n"
        assert oct(victim.stat().st_mode & 0o777) == "0o644"
        assert inventory.read_text().startswith("version") or "clusters" in inventory.read_text()
        assert fleet.request_log == []


async def test_two_runs_cannot_write_one_report(tmp_path: Path) -> None:
    """While one run writes a report, a second run on it is refused and the first goes on."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=8, initial_servers=0)) as fleet:
        # Requests time out after 1 s and are retried: the first run outlives the hang.
        inventory = fleet.write_inventory(
            tmp_path / "fleet.yaml", concurrency=1, extra_defaults={"limits": {"timeout": 1}}
        )
        for cluster in fleet.clusters:  # the first run holds the report until we heal
            fleet.set_faults(cluster.name, Faults(hang_rate=1.0))
        report = tmp_path / "r.jsonl"
        first = await start("apply", str(inventory), "--report", str(report), "-q")
        await wait_for_lines(report, 1, deadline=30)
        second = await bulkkm(
            "apply", str(inventory), "--report", str(report), "--overwrite", deadline=30
        )
        assert first.returncode is None  # the first was still writing when it was refused
        for cluster in fleet.clusters:
            fleet.set_faults(cluster.name, Faults())
        assert second.code == 2
        assert "another bulkkm run" in one_line_error(second.err)
        async with asyncio.timeout(60):
            assert await first.wait() == 0
    lines = read_report(report)
    assert lines[0]["type"] == "run"
    assert lines[-1]["type"] == "summary"
    assert len({line["run_id"] for line in lines}) == 1
    assert set(outcomes(lines)) == {"added"}


async def test_a_report_that_fills_the_disk_stops_new_work(tmp_path: Path) -> None:
    """A write error mid-run: nothing new starts, in-flight work ends, a clear error, exit 1."""
    spec = fleet_spec(clusters=20, svms=4, initial_servers=0, faults=Faults(latency=0.02))
    async with SimulatedFleet(spec) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        report = tmp_path / "r.jsonl"
        result = await bulkkm(
            "apply", str(inventory), "--report", str(report), "-q", max_file_size=2_000
        )
        targets = sum(len(c.key_managers) for c in fleet.clusters) * 2
        assert result.code == 1, result.err
        assert "Traceback" not in result.err
        assert "could not be written" in result.err
        assert len(fleet.write_log) < targets // 2  # the run stopped starting work


async def test_piped_runs_with_waves_do_not_crash(tmp_path: Path) -> None:
    """apply --waves with JSON logs (the default without a TTY) runs to the end."""
    async with SimulatedFleet(fleet_spec(clusters=4, svms=2, initial_servers=0)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        report = tmp_path / "r.jsonl"
        result = await bulkkm("apply", str(inventory), "--report", str(report), "--waves", "1,100%")
        assert result.code == 0, result.err
        assert "Traceback" not in result.err
        assert set(outcomes(read_report(report))) == {"added"}


async def test_plan_and_check_look_at_every_cluster_whatever_the_waves(tmp_path: Path) -> None:
    """An inventory's rollout waves do not cut plan or check short when a wave fails."""
    async with SimulatedFleet(fleet_spec(clusters=5, svms=2, initial_servers=0)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        fleet.cluster("sim-0000").password = "rotated"  # wave 1 fails: 401
        with inventory.open("a") as f:
            f.write('rollout:\n  waves: [1, "100%"]\n')
        for command in ("plan", "check"):
            report = tmp_path / f"{command}.jsonl"
            result = await bulkkm(command, str(inventory), "--report", str(report))
            lines = read_report(report)
            seen = {line["cluster"] for line in lines if line["type"] == "target"}
            assert seen == {f"sim-000{i}" for i in range(1, 5)}, (command, result.err)
            assert not [line for line in lines if line.get("reason") == "rollout_stopped"]


async def test_demo_and_pipes_end_without_tracebacks(tmp_path: Path) -> None:
    """Out-of-range demo sizes are one-line usage errors; a closed pipe is not a crash."""
    for size in ("-1", "20000", "many"):
        result = await bulkkm("demo", "--clusters", size)
        assert result.code == 2
        assert "--clusters" in one_line_error(result.err)
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already exited
    process = await start("schema", stdout=write_end)
    os.close(write_end)
    _, err = await process.communicate()
    assert "Traceback" not in err.decode()
    assert process.returncode in (0, 128 + signal.SIGPIPE)


async def test_a_reader_that_leaves_does_not_end_the_run(tmp_path: Path) -> None:
    """`| head` on stdout or on the logs: the run goes on to the end and keeps its exit code."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=3, initial_servers=0)) as fleet:
        inventory = fleet.write_inventory(tmp_path / "fleet.yaml")
        for stream, fmt in (("stdout", "json"), ("stderr", "json"), ("stderr", "console")):
            report = tmp_path / f"{stream}-{fmt}.jsonl"
            read_end, write_end = os.pipe()
            os.close(read_end)  # the reader has gone before the first line
            args = ("apply", str(inventory), "--report", str(report), "-v", "--log-format", fmt)
            if stream == "stdout":
                process = await start(*args, stdout=write_end)
            else:
                process = await start(*args, stderr=write_end)
            os.close(write_end)
            await process.communicate()
            assert process.returncode == 0, (stream, fmt)
            assert read_report(report)[-1]["type"] == "summary"
