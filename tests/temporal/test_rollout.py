"""--resume, --plan and --confirm-waves across regions: as the in-process engine does them."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import yaml

from bulkkm.simulator import WriteRecord
from tests.cli import bulkkm, read_report, start, terminal
from tests.invariants import check_report, outcomes
from tests.temporal.conftest import regional_workers, two_regions, worker

DEADLINE = 90.0


def writes_per_target(writes: Sequence[WriteRecord]) -> Counter[tuple[str, str, str]]:
    """Key-server writes counted by (cluster, key manager, server)."""
    return Counter((w.cluster, w.key_manager_uuid, w.server) for w in writes)


async def test_resume_carries_what_the_clusters_confirm_and_adds_the_rest(
    temporal_server: str, tmp_path: Path
) -> None:
    """A first run on one region, then --resume on both: old lines carried, nothing sent twice."""
    async with (
        two_regions(tmp_path, clusters=2, svms=2) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
        temporal = ("--temporal", temporal_server)
        one = await bulkkm(
            "apply", str(inventory), *temporal, "--report", str(first), "--limit", "eu-*",
            deadline=DEADLINE,
        )  # fmt: skip
        assert one.code == 0, one.err
        old = {
            (t["cluster"], t["svm"], t["server"]): t
            for t in read_report(first)
            if t["type"] == "target"
        }
        assert old
        assert {t["outcome"] for t in old.values()} == {"added"}
        two = await bulkkm(
            "apply", str(inventory), *temporal, "--report", str(second), "--resume", str(first),
            deadline=DEADLINE,
        )  # fmt: skip
        assert two.code == 0, two.err
        lines = read_report(second)
        check_report(lines)
        assert lines[0]["resumed_from"] == read_report(first)[0]["run_id"]
        targets = [t for t in lines if t["type"] == "target"]
        carried = [t for t in targets if t.get("carried_over")]
        assert {(t["cluster"], t["svm"], t["server"]) for t in carried} == set(old)
        for line in carried:  # the old line, as it was written
            was = old[(line["cluster"], line["svm"], line["server"])]
            assert line["started_at"] == was["started_at"]
            assert line["attempts"] == was["attempts"]
        fresh = [t for t in targets if not t.get("carried_over")]
        assert fresh
        assert {t["cluster"][:3] for t in fresh} == {"us-"}
        assert set(outcomes(fresh)) == {"added"}
        for fleet in fleets.values():
            assert set(writes_per_target(fleet.write_log).values()) == {1}


async def test_a_saved_plan_runs_only_its_additions_and_skips_drifted_key_managers(
    temporal_server: str, tmp_path: Path
) -> None:
    """plan --out, one cluster changed since, apply --plan --temporal: it alone is untouched."""
    async with (
        two_regions(tmp_path, clusters=2, svms=2) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        plan = tmp_path / "plan.json"
        made = await bulkkm("plan", str(inventory), "--out", str(plan), "-q")
        assert made.code == 0, made.err
        # Drift: eu-sim-0000 gets another server from another run after the plan was made.
        other = tmp_path / "other.yaml"
        other.write_text(
            inventory.read_text().replace("kms-new.example.com", "kms-other.example.com")
        )
        drift = await bulkkm(
            "apply", str(other), "--limit", "eu-sim-0000", "--report",
            str(tmp_path / "drift.jsonl"),
        )  # fmt: skip
        assert drift.code == 0, drift.err
        drifted = len(fleets["eu"].write_log)
        assert drifted
        report = tmp_path / "report.jsonl"
        result = await bulkkm(
            "apply", "--plan", str(plan), "--temporal", temporal_server, "--report", str(report),
            deadline=DEADLINE,
        )  # fmt: skip
        assert result.code == 1, result.err  # drifted targets are skipped
        lines = read_report(report)
        check_report(lines)
        assert lines[0]["plan_id"]
        targets = [t for t in lines if t["type"] == "target"]
        mine = [t for t in targets if t["cluster"] == "eu-sim-0000"]
        assert mine
        assert {(t["outcome"], t["reason"]) for t in mine} == {("skipped", "drifted")}
        others = [t for t in targets if t["cluster"] != "eu-sim-0000"]
        assert others
        assert set(outcomes(others)) == {"added"}
        # Nothing more was sent to the drifted cluster; every other target written once.
        assert len([w for w in fleets["eu"].write_log if w.cluster == "sim-0000"]) == drifted
        for fleet in fleets.values():
            assert set(writes_per_target(fleet.write_log).values()) == {1}


async def test_confirm_waves_asks_on_the_terminal_between_waves(
    temporal_server: str, tmp_path: Path
) -> None:
    """--waves 1,100% --confirm-waves: the prompt after wave 1; no stops the rollout (exit 3)."""
    async with (
        two_regions(tmp_path, clusters=2, svms=1) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        async with (
            terminal(
                "apply", str(inventory), "--temporal", temporal_server, "--report", str(report),
                "--waves", "1,100%", "--confirm-waves",
            ) as term,
            asyncio.timeout(DEADLINE),
        ):  # fmt: skip
            await term.until(lambda screen: any("start wave 2?" in line for line in screen))
            assert any("wave 1 of 2 done" in line for line in term.screen())
            term.send("n\n")
            code = await term.wait()
        assert code == 3, term.raw.decode(errors="replace")
        lines = read_report(report)
        check_report(lines)
        wave1 = [t for t in lines if t["type"] == "target"]
        assert wave1
        assert {t["wave"] for t in wave1} == {1}
        declined = [c for c in lines if c["type"] == "cluster"]
        assert len(declined) == 3
        assert {(c["outcome"], c["reason"]) for c in declined} == {("skipped", "declined")}
        assert sum(len(f.write_log) for f in fleets.values()) == len(wave1)


def wave_one_written(report: Path) -> bool:
    """Whether the report holds a target line yet."""
    return report.exists() and any(line["type"] == "target" for line in read_report(report))


async def interrupted_between_waves(
    temporal_server: str, inventory: Path, report: Path
) -> tuple[int | None, str, str]:
    """``apply --temporal --waves 1,100%`` with a long pause, Ctrl-C once wave 1 is written:
    the coordinator's exit code, stdout and stderr."""
    coordinator = await start(
        "apply", str(inventory), "--temporal", temporal_server, "--report", str(report),
        "--waves", "1,100%", "--pause-between-waves", "600",
    )  # fmt: skip
    async with asyncio.timeout(DEADLINE):
        while not wave_one_written(report):  # noqa: ASYNC110 -- a file another process writes
            await asyncio.sleep(0.1)
        coordinator.send_signal(signal.SIGINT)
        out, err = await coordinator.communicate()
    return coordinator.returncode, out.decode(), err.decode()


async def test_ctrl_c_stops_new_clusters_and_writes_the_whole_report(
    temporal_server: str, tmp_path: Path
) -> None:
    """SIGINT while the rollout pauses between waves: no new cluster, a full report, exit 130."""
    async with (
        two_regions(tmp_path, clusters=2, svms=1) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        code, _, err = await interrupted_between_waves(temporal_server, inventory, report)
        assert code == 130, err
        assert "--attach bulkkm-run-" in err
        lines = read_report(report)
        check_report(lines)
        assert lines[-1]["stop_reason"] == "interrupted"
        skipped = [c for c in lines if c["type"] == "cluster"]
        assert len(skipped) == 3
        assert {(c["outcome"], c["reason"]) for c in skipped} == {("skipped", "interrupted")}
        worked = {t["cluster"] for t in lines if t["type"] == "target"}
        assert len(worked) == 1
        assert sum(len(f.write_log) for f in fleets.values()) == len(
            [t for t in lines if t["type"] == "target" and t["outcome"] == "added"]
        )


async def test_the_command_to_finish_an_interrupted_rollout_runs_on_the_regional_workers(
    temporal_server: str, tmp_path: Path
) -> None:
    """Ctrl-C between waves: "to finish the job" (closing summary and ``report summarize``)
    goes through the same Temporal server; run as printed, it finishes the fleet there."""
    async with (
        two_regions(tmp_path, clusters=2, svms=1) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        code, out, err = await interrupted_between_waves(temporal_server, inventory, report)
        assert code == 130, err
        prefix = "to finish the job: "
        (command,) = [
            line.removeprefix(prefix) for line in out.splitlines() if line.startswith(prefix)
        ]
        summarized = await bulkkm("report", "summarize", str(report))
        assert prefix + command in summarized.out.splitlines()
        args = shlex.split(command)
        assert args[:2] == ["bulkkm", "apply"]
        assert args[args.index("--temporal") + 1] == temporal_server
        assert args[args.index("--resume") + 1] == str(report)
        assert args[args.index("--waves") + 1] == "1,100%"  # the rest in waves too
        assert args[args.index("--pause-between-waves") + 1] == "600"
        # As printed: wave 1 was done before (carried over), so no 600 s pause follows it.
        done = await bulkkm(*args[1:], deadline=DEADLINE)
        assert done.code == 0, done.err
        lines = read_report(Path(args[args.index("--report") + 1]))
        check_report(lines)
        assert f"workflow bulkkm-run-{lines[0]['run_id']} started" in done.err
        assert lines[0]["temporal"]["address"] == temporal_server
        assert set(outcomes(lines)) == {"added"}
        first = [line for line in read_report(report) if line["type"] == "target"]
        assert sum(1 for line in lines if line.get("carried_over")) == len(first)
        for fleet in fleets.values():
            assert set(writes_per_target(fleet.write_log).values()) == {1}


async def test_a_wave_waiting_for_its_go_ahead_is_answered_by_an_attached_coordinator(
    temporal_server: str, tmp_path: Path
) -> None:
    """The asking coordinator killed at the prompt: --attach --confirm-waves asks again; yes."""
    async with (
        two_regions(tmp_path, clusters=1, svms=1) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        temporal = ("--temporal", temporal_server, "--report", str(report))
        async with (
            terminal(
                "apply", str(inventory), *temporal, "--waves", "1,100%", "--confirm-waves"
            ) as first,
            asyncio.timeout(DEADLINE),
        ):
            await first.until(lambda screen: any("start wave 2?" in line for line in screen))
            started = re.search(r"bulkkm-run-[0-9a-f-]{36}", "".join(first.screen()))
            assert started is not None
            workflow = started.group()
            first.signal(signal.SIGKILL)
            await first.wait()
        async with (
            terminal("apply", "--attach", workflow, *temporal, "--confirm-waves") as second,
            asyncio.timeout(DEADLINE),
        ):
            await second.until(lambda screen: any("start wave 2?" in line for line in screen))
            second.send("y\n")
            code = await second.wait()
        assert code == 0, second.raw.decode(errors="replace")
        lines = read_report(report)
        check_report(lines)
        assert {t["wave"] for t in lines if t["type"] == "target"} == {1, 2}
        assert set(outcomes(lines)) == {"added"}
        for fleet in fleets.values():
            assert set(writes_per_target(fleet.write_log).values()) == {1}


async def test_a_region_without_a_worker_is_named_and_ctrl_c_does_not_wait_for_it(
    temporal_server: str, tmp_path: Path
) -> None:
    """No worker for one region: the coordinator says so; Ctrl-C ends the run (exit 130)."""
    async with two_regions(tmp_path, clusters=1, svms=1) as (fleets, inventory):
        # A region no test ever served: the server lists pollers seen in the last minutes.
        lonely = f"lonely-{uuid.uuid4().hex[:8]}"
        data = yaml.safe_load(inventory.read_text())
        data["groups"]["us"]["region"] = lonely
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        log = tmp_path / "worker-eu.log"
        report = tmp_path / "report.jsonl"
        async with worker(temporal_server, "eu", inventory, log), asyncio.timeout(DEADLINE):
            while b"worker_started" not in log.read_bytes():  # noqa: ASYNC110 -- its log file
                await asyncio.sleep(0.05)
            said = await _interrupt_when_waiting(temporal_server, inventory, report, lonely)
        assert f"no worker polls task queue bulkkm-{lonely}" in said
        assert "its clusters (1) wait until one does" in said
        lines = read_report(report)
        check_report(lines)
        assert lines[-1]["stop_reason"] == "interrupted"
        (waited,) = [c for c in lines if c["type"] == "cluster"]
        assert (waited["cluster"], waited["reason"]) == ("us-sim-0000", "interrupted")
        assert not fleets["us"].write_log


async def _interrupt_when_waiting(address: str, inventory: Path, report: Path, lonely: str) -> str:
    """The coordinator until the served region is done, then SIGINT: exit 130; its stderr."""
    coordinator = await start(
        "apply", str(inventory), "--temporal", address, "--report", str(report),
    )  # fmt: skip
    assert coordinator.stderr is not None
    said = b""
    while f"no worker polls task queue bulkkm-{lonely}".encode() not in said:
        line = await coordinator.stderr.readline()
        assert line, said.decode()
        said += line
    # The eu cluster done; the other handed to Temporal, never begun.
    while not wave_one_written(report):  # noqa: ASYNC110 -- a file another process writes
        await asyncio.sleep(0.05)
    coordinator.send_signal(signal.SIGINT)
    said += await coordinator.stderr.read()
    await coordinator.wait()
    assert coordinator.returncode == 130, said.decode()
    return said.decode()
