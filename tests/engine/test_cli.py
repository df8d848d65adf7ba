"""The bulkkm command as a user runs it: a real process against the simulated fleet."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkkm.inventory import load_inventory
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import bulkkm, read_report, start, wait_for_lines
from tests.engine.conftest import fleet_spec
from tests.invariants import check_invariants, outcomes

SENTINEL = "SENTINEL-pw-3c9f1e"
KMIP_SENTINEL = "SENTINEL-kmip-77a0b2"


async def apply_until(inventory: Path, report: Path, *, lines: int) -> asyncio.subprocess.Process:
    """Start ``bulkkm apply`` and return once its report has ``lines`` lines."""
    process = await start(
        "apply", str(inventory), "--report", str(report), "-q", stdout=asyncio.subprocess.DEVNULL
    )
    await wait_for_lines(report, lines)
    return process


def checked(fleet: SimulatedFleet, inventory: Path, before: dict[str, Any], report: Path) -> None:
    """Every invariant of a CLI run, from its report and the fleet's records."""
    check_invariants(
        inventory=load_inventory(inventory),
        before=before,
        after=fleet.state(),
        writes=fleet.write_log,
        report=read_report(report),
    )


async def test_kill_9_then_resume_completes_the_fleet_without_writing_twice(tmp_path: Path) -> None:
    """apply killed by SIGKILL mid-run, then --resume: every target done, none added twice."""
    spec = fleet_spec(
        clusters=30,
        svms=6,
        seed=21,
        faults=Faults(latency=0.02, ambiguous_rate=0.05),
        initial_servers=0,
    )
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(
            tmp_path / "fleet.yaml", key_servers=("kms-new.example.com",), concurrency=2
        )
        before = fleet.state()
        first = tmp_path / "first.jsonl"
        process = await apply_until(path, first, lines=40)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        killed = read_report(first)
        assert not any(line["type"] == "summary" for line in killed)
        second = tmp_path / "second.jsonl"
        code, _, err = await bulkkm(
            "apply", str(path), "--report", str(second), "--resume", str(first), "-q"
        )
        assert code == 0, err
        lines = read_report(second)
        check_invariants(
            inventory=load_inventory(path),
            before=before,
            after=fleet.state(),
            writes=fleet.write_log,
            report=lines,
        )
    assert set(outcomes(lines)) <= {"added", "present"}
    carried = [line for line in lines if line.get("carried_over")]
    assert carried  # the first run's finished targets are in the new report too
    assert lines[0]["resumed_from"] == killed[0]["run_id"]


async def test_no_secret_reaches_output_logs_or_report(tmp_path: Path) -> None:
    """A sentinel cluster password and KMIP password appear nowhere, even with failures and -v."""
    spec = fleet_spec(
        clusters=4,
        svms=2,
        seed=5,
        password=SENTINEL,
        initial_servers=0,
        faults=Faults(transient_rate=0.3),
    )
    async with SimulatedFleet(spec) as fleet:
        fleet.cluster("sim-0002").password = "rotated"  # 401s for that one
        server = {"server": "kms-new.example.com", "password": "env:KMIP_PW"}
        path = fleet.write_inventory(tmp_path / "fleet.yaml", key_servers=(server,))
        for fmt in ("json", "console"):
            report = tmp_path / f"{fmt}.jsonl"
            before = fleet.state()
            writes = len(fleet.write_log)
            code, out, err = await bulkkm(
                "apply",
                str(path),
                "--report",
                str(report),
                "-vv",
                "--log-format",
                fmt,
                env={"KMIP_PW": KMIP_SENTINEL},
            )
            assert code == 1
            for text in (out, err, report.read_text()):
                assert SENTINEL not in text
                assert KMIP_SENTINEL not in text
            assert "authentication failed" in report.read_text()
            assert oct(report.stat().st_mode & 0o777) == "0o600"
            check_invariants(
                inventory=load_inventory(path, environ={"KMIP_PW": KMIP_SENTINEL}),
                before=before,
                after=fleet.state(),
                writes=fleet.write_log[writes:],
                report=read_report(report),
            )


@pytest.mark.parametrize(
    "args",
    [
        ("apply",),
        ("apply", "INVENTORY"),
        ("apply", "INVENTORY", "--report", "r.jsonl", "--max-fail-percent", "200"),
        ("apply", "INVENTORY", "--report", "r.jsonl", "--max-failures", "-1"),
        ("apply", "INVENTORY", "--report", "r.jsonl", "--limit", "nothing-*"),
        ("apply", "INVENTORY", "--report", "r.jsonl", "--resume", "missing.jsonl"),
        ("apply", "missing.yaml", "--report", "r.jsonl"),
        ("frobnicate",),
        ("report", "summarize", "missing.jsonl"),
    ],
)
async def test_bad_command_lines_exit_2_with_one_line_and_send_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """Every usage mistake is one line on stderr, exit 2, no traceback, no request."""
    async with SimulatedFleet(fleet_spec(clusters=1, svms=1)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        argv = [str(path) if a == "INVENTORY" else a for a in args]
        code, _, err = await bulkkm(*argv)
        assert code == 2
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
        assert fleet.requests(fleet.clusters[0].name) == {}


async def test_broken_inventory_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    """validate prints one line per problem, names file and line, and exits 2."""
    path = tmp_path / "broken.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n  username: admin\n  password: plain-text-password\n  key_servers: [kms1]\n"
        "clusters:\n  - name: a\n    address: http://10.0.0.1\n    svms: all\n"
        "  - name: a\n    adress: 10.0.0.2\n    svms: all\n"
    )
    code, _, err = await bulkkm("validate", str(path))
    assert code == 2
    assert "Traceback" not in err
    problems = [line for line in err.splitlines() if line.startswith(str(path))]
    assert len(problems) >= 4, err
    assert "plain-text-password" not in err


async def test_report_summarize_reads_back_a_run(tmp_path: Path) -> None:
    """summarize --json counts the outcomes that apply wrote."""
    async with SimulatedFleet(fleet_spec(clusters=2, svms=2, seed=3, initial_servers=0)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        report = tmp_path / "r.jsonl"
        before = fleet.state()
        code, _, err = await bulkkm("apply", str(path), "--report", str(report), "-q")
        assert code == 0, err
        checked(fleet, path, before, report)
    code, out, _ = await bulkkm("report", "summarize", str(report), "--json")
    assert code == 0
    summary = orjson.loads(out)
    assert summary["outcomes"] == dict(outcomes(read_report(report)))
    assert summary["complete"] is True


async def test_schema_and_validate_on_a_good_inventory(tmp_path: Path) -> None:
    """schema prints JSON Schema; validate exits 0 and names the clusters."""
    code, out, _ = await bulkkm("schema")
    assert code == 0
    assert orjson.loads(out)["type"] == "object"
    async with SimulatedFleet(fleet_spec(clusters=2, svms=1)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        code, out, err = await bulkkm("validate", str(path))
    assert code == 0, err
    assert "sim-0000" in out
    assert "sim-0001" in out


async def test_saved_plan_is_shown_and_applied(tmp_path: Path) -> None:
    """plan --out, plan --show, apply --plan: the approved additions and nothing else."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=2, seed=8, initial_servers=0)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        plan = tmp_path / "plan.json"
        code, out, err = await bulkkm("plan", str(path), "--out", str(plan), "-q")
        assert code == 0, err
        assert fleet.write_log == []
        code, out, _ = await bulkkm("plan", "--show", str(plan))
        assert code == 0
        additions = out.count("\n  + ")
        assert additions > 0
        report = tmp_path / "r.jsonl"
        before = fleet.state()
        code, _, err = await bulkkm("apply", "--plan", str(plan), "--report", str(report), "-q")
        assert code == 0, err
        checked(fleet, path, before, report)
    assert outcomes(read_report(report))["added"] == additions


async def test_an_interrupted_plan_says_which_clusters_it_does_not_cover(tmp_path: Path) -> None:
    """Ctrl-C during ``plan --out``: the plan written names every cluster it never discovered,
    and says it is incomplete where a reviewer looks first (the closing line, ``--show``)."""
    spec = fleet_spec(clusters=10, svms=1, seed=8, initial_servers=0, faults=Faults(latency=0.3))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        plan = tmp_path / "plan.json"
        process = await start("plan", str(path), "--out", str(plan), "--max-connections", "2")
        async with asyncio.timeout(60):
            while not fleet.request_log:  # noqa: ASYNC110 -- the fleet runs in this loop
                await asyncio.sleep(0.01)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 130, err
        body = orjson.loads(plan.read_bytes())
        planned = {cluster["name"] for cluster in body["clusters"]}
        missing = set(body["not_discovered"])
        assert missing, "an interrupt this early leaves clusters undiscovered"
        assert planned | missing == {c.name for c in load_inventory(path).clusters}
        assert f"incomplete: {len(missing)} clusters not discovered" in out.decode()
        code, shown, _ = await bulkkm("plan", "--show", str(plan))
        assert code == 0
        assert shown.splitlines()[3].startswith(f"INCOMPLETE: {len(missing)} clusters")
        listed = shown.splitlines()[-len(missing) :]  # at the end, one a line
        assert sorted(line.strip() for line in listed) == sorted(missing)
        applied = await bulkkm("apply", "--plan", str(plan), "--report", str(tmp_path / "r.jsonl"))
        assert applied.code == 0, applied.err
        warning = [line for line in applied.err.splitlines() if "plan_incomplete" in line]
        assert len(warning) == 1, applied.err
        assert f'"not_discovered":{len(missing)}' in warning[0]
    assert {write.cluster for write in fleet.write_log} == planned


async def test_a_saved_plan_lists_clusters_in_the_inventory_s_order(tmp_path: Path) -> None:
    """Discovery finishes in any order (answers jittered): the plan file keeps the fleet's."""
    spec = fleet_spec(clusters=12, svms=1, seed=8, initial_servers=0, faults=Faults(jitter=0.1))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        plan = tmp_path / "plan.json"
        code, _, err = await bulkkm("plan", str(path), "--out", str(plan), "-q")
        assert code == 0, err
    names = [cluster.name for cluster in load_inventory(path).clusters]
    planned = [cluster["name"] for cluster in orjson.loads(plan.read_bytes())["clusters"]]
    assert planned == names


async def test_an_approved_plan_killed_then_resumed_carries_what_it_added(tmp_path: Path) -> None:
    """apply --plan killed by SIGKILL, then apply --plan --resume of the same plan: what the
    first run added is carried, not taken for drift; the rest is added; nothing twice."""
    spec = fleet_spec(clusters=12, svms=4, seed=31, faults=Faults(latency=0.02), initial_servers=1)
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        plan = tmp_path / "plan.json"
        code, _, err = await bulkkm("plan", str(path), "--out", str(plan), "-q")
        assert code == 0, err
        before = fleet.state()
        first = tmp_path / "first.jsonl"
        process = await start(
            "apply",
            "--plan",
            str(plan),
            "--report",
            str(first),
            "-q",
            stdout=asyncio.subprocess.DEVNULL,
        )
        await wait_for_lines(first, 10)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        second = tmp_path / "second.jsonl"
        code, _, err = await bulkkm(
            "apply", "--plan", str(plan), "--resume", str(first), "--report", str(second), "-q"
        )
        lines = read_report(second)
        # Nothing skipped as drifted (a POST the kill cut off before its line: present now).
        assert set(outcomes(lines)) <= {"added", "present"}, outcomes(lines)
        assert code == 0, err
        checked(fleet, path, before, second)
    assert any(line.get("carried_over") for line in lines)
    assert any(not line.get("carried_over") for line in lines if line["type"] == "target")


async def test_plan_for_a_changed_inventory_is_refused(tmp_path: Path) -> None:
    """apply --plan refuses an inventory edited since the plan, before sending anything."""
    async with SimulatedFleet(fleet_spec(clusters=1, svms=1, seed=8, initial_servers=0)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        plan = tmp_path / "plan.json"
        assert (await bulkkm("plan", str(path), "--out", str(plan), "-q"))[0] == 0
        path.write_text(path.read_text() + "\n# edited\n")
        requests = len(fleet.request_log)
        code, _, err = await bulkkm("apply", "--plan", str(plan), "--report", str(tmp_path / "r"))
        assert code == 2
        assert "changed since the plan" in err
        assert len(fleet.request_log) == requests


async def test_waves_from_the_command_line_and_confirm_needs_a_terminal(tmp_path: Path) -> None:
    """--waves rolls out in waves; --confirm-waves without a terminal is refused (exit 2)."""
    async with SimulatedFleet(fleet_spec(clusters=4, svms=1, seed=9, initial_servers=0)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        report = tmp_path / "r.jsonl"
        code, _, err = await bulkkm(
            "apply", str(path), "--report", str(report), "--waves", "1,100%", "--confirm-waves"
        )
        assert code == 2
        assert "terminal" in err
        assert fleet.request_log == []
        before = fleet.state()
        code, _, err = await bulkkm(
            "apply", str(path), "--report", str(report), "--waves", "1,100%", "-q"
        )
        assert code == 0, err
        checked(fleet, path, before, report)
        code, out, _ = await bulkkm("report", "summarize", str(report))
    assert {line["wave"] for line in read_report(report) if line["type"] == "target"} == {1, 2}
    assert "wave 1:" in out
    assert "wave 2:" in out


async def test_ctrl_c_finishes_in_flight_work_and_writes_the_summary(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130, a summary line, every discovered target has one line."""
    spec = fleet_spec(clusters=40, svms=4, seed=23, faults=Faults(latency=0.05), initial_servers=0)
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        before = fleet.state()
        report = tmp_path / "r.jsonl"
        process = await apply_until(path, report, lines=20)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            _, err = await process.communicate()
        assert process.returncode == 130, err
        lines = read_report(report)
        check_invariants(
            inventory=load_inventory(path),
            before=before,
            after=fleet.state(),
            writes=fleet.write_log,
            report=lines,
        )
    assert lines[-1]["type"] == "summary"
    assert lines[-1]["stop_reason"] == "interrupted"
    cancelled = [line for line in lines if line.get("outcome") == "cancelled"]
    assert cancelled  # batches not started when the signal came
    assert {line["reason"] for line in cancelled} == {"interrupted"}
    assert lines[0]["targets"] == sum(1 for line in lines if line["type"] == "target")


async def test_a_terminal_that_hangs_up_stops_the_run_as_sigterm_does(tmp_path: Path) -> None:
    """The SSH session drops mid-run: the terminal is gone (writing to it fails) and SIGHUP
    comes. The run stops as on SIGTERM, without a traceback: exit 130, the report complete
    with its summary line. Under ``nohup`` (SIGHUP ignored) the run goes on to its end."""
    spec = fleet_spec(clusters=30, svms=2, seed=23, faults=Faults(latency=0.05), initial_servers=0)
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        report = tmp_path / "r.jsonl"
        leader, follower = pty.openpty()
        try:
            args = ("apply", str(path), "--report", str(report), "--max-connections", "4")
            process = await start(*args, stdin=follower, stdout=follower, stderr=follower)
        finally:
            os.close(follower)
        await wait_for_lines(report, 4)
        os.close(leader)  # the terminal is gone: what the run writes to it now fails (EIO)
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(60):
            await process.wait()
        assert process.returncode == 130
        lines = read_report(report)
        assert lines[-1]["type"] == "summary"
        assert lines[-1]["stop_reason"] == "interrupted"
        nohup = tmp_path / "nohup.jsonl"
        ignoring = "import signal, runpy; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
        ignoring += "runpy.run_module('bulkkm', run_name='__main__')"
        process = await start(
            "apply", str(path), "--report", str(nohup), "--max-connections", "4", "-q",
            entry=("-c", ignoring),
        )  # fmt: skip
        await wait_for_lines(nohup, 4)
        process.send_signal(signal.SIGHUP)
        async with asyncio.timeout(60):
            _, err = await process.communicate()
        assert process.returncode == 0, err
        assert read_report(nohup)[-1]["stop_reason"] is None


async def test_a_terminal_that_hangs_up_at_the_wave_prompt_ends_the_run_cleanly(
    tmp_path: Path,
) -> None:
    """--confirm-waves asking when the terminal goes away: no answer is no, and nothing
    written to the dead terminal (EIO) breaks the run: the later waves are skipped, the
    report ends with its summary, exit 3."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=1, seed=23, initial_servers=0)) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        report = tmp_path / "r.jsonl"
        leader, follower = pty.openpty()
        try:
            args = ("apply", str(path), "--report", str(report), "--waves", "1,100%")
            process = await start(
                *args, "--confirm-waves", stdin=follower, stdout=follower, stderr=follower
            )
        finally:
            os.close(follower)
        screen = b""
        async with asyncio.timeout(60):
            while b"[y/N]" not in screen:
                screen += await asyncio.to_thread(os.read, leader, 65536)
        # The terminal hangs up while the question waits: reading it ends (EOF), writing
        # to it fails (EIO) before any SIGHUP is handled (none comes here: the pty is not
        # the run's controlling terminal).
        os.close(leader)
        async with asyncio.timeout(60):
            await process.wait()
        assert process.returncode == 3  # no answer is no: declined
        lines = read_report(report)
        assert lines[-1]["type"] == "summary"
        assert {line["reason"] for line in lines if line["type"] == "cluster"} <= {
            "declined",
            "interrupted",
        }
        assert {write.cluster for write in fleet.write_log} == {"sim-0000"}  # wave 1 only
