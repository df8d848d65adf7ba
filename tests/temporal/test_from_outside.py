"""Across regions as an operator meets it: real workers, a real coordinator, signals and faults."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
from pathlib import Path

from bulkkm.simulator import Faults
from tests.cli import bulkkm, read_report, start
from tests.invariants import check_report
from tests.temporal.conftest import regional_workers, two_regions

DEADLINE = 90.0


def wave_one_written(report: Path) -> bool:
    """Whether the report holds a target line yet."""
    return report.exists() and any(line["type"] == "target" for line in read_report(report))


async def test_a_coordinator_whose_terminal_hangs_up_stops_the_rollout_as_sigterm_does(
    temporal_server: str, tmp_path: Path
) -> None:
    """The SSH session of the coordinator drops between waves (the terminal gone, SIGHUP):
    as in-process, no new cluster starts, the report is completed with its summary line,
    exit 130; before, the coordinator died at once and left the report without a summary."""
    async with (
        two_regions(tmp_path, clusters=2, svms=1) as (fleets, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        leader, follower = pty.openpty()
        try:
            coordinator = await start(
                "apply", str(inventory), "--temporal", temporal_server, "--report", str(report),
                "--waves", "1,100%", "--pause-between-waves", "600",
                stdin=follower, stdout=follower, stderr=follower,
            )  # fmt: skip
        finally:
            os.close(follower)
        async with asyncio.timeout(DEADLINE):
            while not wave_one_written(report):  # noqa: ASYNC110 -- a file another process writes
                await asyncio.sleep(0.1)
            os.close(leader)  # the terminal is gone: writing to it now fails (EIO)
            coordinator.send_signal(signal.SIGHUP)
            await coordinator.wait()
        assert coordinator.returncode == 130
        lines = read_report(report)
        check_report(lines)
        assert lines[-1]["type"] == "summary"
        assert lines[-1]["stop_reason"] == "interrupted"
        skipped = [c for c in lines if c["type"] == "cluster"]
        assert {(c["outcome"], c["reason"]) for c in skipped} == {("skipped", "interrupted")}
        assert len(skipped) == 3
        written = sum(len(fleet.write_log) for fleet in fleets.values())
        assert written == sum(1 for t in lines if t["type"] == "target")


async def test_the_closing_summary_counts_the_retries_the_workers_made(
    temporal_server: str, tmp_path: Path
) -> None:
    """Connections dropped on every cluster: the workers retry, and the closing summary's
    "retried attempts" column says how often, as in-process (it said 0 for every error)."""
    async with (
        two_regions(tmp_path, clusters=2, svms=2, faults=Faults(reset_rate=0.3)) as (_, inventory),
        regional_workers(temporal_server, inventory, tmp_path),
    ):
        report = tmp_path / "report.jsonl"
        result = await bulkkm(
            "apply", str(inventory), "--temporal", temporal_server, "--report", str(report),
            deadline=DEADLINE,
        )  # fmt: skip
        assert result.code in (0, 1), result.err
        check_report(read_report(report))
        lines = result.out.splitlines()
        assert "errors (final targets and clusters; retried attempts):" in lines, result.out
        (transport,) = [line.split() for line in lines if line.startswith("  transport ")]
        assert int(transport[2]) > 0, result.out
