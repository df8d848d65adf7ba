"""What an operator sees: the real CLI on a pseudo-terminal, and without one, against the simulator.

The terminal tests run ``python -m bulkkm`` with stdin, stdout and stderr on a pty and feed
everything it writes to a terminal emulator (pyte), then read the screen as a person would.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shlex
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkkm.console import DEFAULT_PROGRESS_EVERY, PROGRESS_EVERY_ENV, progress_every
from bulkkm.events import Outcome, WaveFinished
from bulkkm.inventory import load_inventory
from bulkkm.rollout import parse_waves
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import bulkkm, read_report, start, terminal, wait_for_lines
from tests.engine.conftest import NEW_SERVERS, fleet_spec, inventory_for, run_rollout
from tests.invariants import check_invariants, outcomes

BAR = "━"
"""What rich draws bars with."""
LOG_LINE = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+Z \[(debug|info|warning|error)")
HIDE, SHOW = b"\x1b[?25l", b"\x1b[?25h"


def assert_clean(lines: list[str]) -> None:
    """Log lines start at column 0, never inside a bar's line; at most one live display."""
    bars = [line for line in lines if BAR in line]
    assert len(bars) <= 2, "stale bars left on the screen:\n" + "\n".join(bars)
    for line in lines:
        if LOG_LINE.search(line):
            assert LOG_LINE.match(line), f"log text not at the start of its line: {line!r}"
            assert BAR not in line, f"log text inside the bar's line: {line!r}"


async def test_terminal_logs_above_the_bar_folds_warnings_and_asks_on_its_own_line(
    tmp_path: Path,
) -> None:
    """On a TTY: logs above the bar, a digest of blocked targets, a visible prompt, no stale bar."""
    spec = fleet_spec(clusters=6, svms=4, seed=3, faults=Faults(latency=0.1))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", key_servers=NEW_SERVERS)
        report = tmp_path / "r.jsonl"
        async with terminal(
            "apply", str(path), "--report", str(report), "--waves", "1,100%", "--confirm-waves"
        ) as term:
            async with asyncio.timeout(60):
                await term.until(lambda lines: bool(lines) and lines[-1].endswith("[y/N]"))
            at_prompt = term.screen()
            assert at_prompt[-1] == "start wave 2? [y/N]"  # on its own line, nothing drawn over it
            assert at_prompt[-2].startswith("wave 1 of 2 done: ")
            assert not [line for line in at_prompt if BAR in line]  # the bar is paused
            term.send("y\n")
            snapshots = []
            while term.returncode is None:
                snapshots.append(term.screen())
                await asyncio.sleep(0.05)
            async with asyncio.timeout(60):
                code = await term.wait()
    lines = read_report(report)
    blocked = outcomes(lines)["blocked"]
    assert blocked > 5, "the fleet must block more targets than the digest shows"
    assert code == 1
    assert any(BAR in line for snap in snapshots for line in snap), "no bar was ever drawn"
    for snap in snapshots:
        assert_clean(snap)
    screen = term.screen()
    assert_clean(screen)
    assert not [line for line in screen if BAR in line]  # erased at the end, not left behind
    shown = [line for line in screen if re.search(r"\] target_blocked ", line)]
    assert len(shown) == 5, "\n".join(shown)
    assert any("target_blocked_not_shown" in line and "by_reason=" in line for line in screen)
    assert any(
        line.startswith(f"apply: {sum(outcomes(lines).values())} targets") for line in screen
    )
    assert term.raw.rfind(SHOW) > term.raw.rfind(HIDE) >= 0


async def test_second_ctrl_c_exits_at_once_with_the_cursor_shown(tmp_path: Path) -> None:
    """Ctrl-C twice while a request hangs: exit 130 without waiting out the grace (no summary
    line written), and the cursor is visible again."""
    spec = fleet_spec(clusters=4, svms=4, seed=5, initial_servers=0, faults=Faults(latency=0.3))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        report = tmp_path / "r.jsonl"
        async with terminal("apply", str(path), "--report", str(report)) as term:
            async with asyncio.timeout(60):
                await term.until(lambda lines: any(BAR in line for line in lines))
                # From now on every request hangs: in-flight work outlasts any grace period.
                seen = len(fleet.request_log)
                for cluster in fleet.clusters:
                    fleet.set_faults(cluster.name, Faults(hang_rate=1.0))
                while len(fleet.request_log) == seen:  # noqa: ASYNC110 -- another process sends
                    await asyncio.sleep(0.01)
                term.signal(signal.SIGINT)
                await term.until(lambda lines: any("Ctrl-C again" in line for line in lines))
                term.signal(signal.SIGINT)
                code = await term.wait()
    assert code == 130
    lines = read_report(report)
    assert lines[0]["type"] == "run"
    # A run that waited out the grace would have cancelled the hung work and summed it up.
    assert not [line for line in lines if line["type"] == "summary"]
    assert term.raw.rfind(HIDE) >= 0
    assert term.raw.rfind(SHOW) > term.raw.rfind(HIDE), "the cursor is left hidden"


def _stamp(event: dict[str, Any]) -> datetime:
    """A log line's time."""
    return datetime.fromisoformat(str(event["timestamp"]))


EVERY = 1.0
"""The progress interval the piped test sets (``BULKKM_PROGRESS_EVERY``): 5 s by default."""


def test_progress_lines_default_to_every_5_seconds_and_the_variable_sets_them() -> None:
    """Without the variable a progress line every 5 s; ``BULKKM_PROGRESS_EVERY`` sets it."""
    assert progress_every({}) == DEFAULT_PROGRESS_EVERY == 5.0
    assert progress_every({PROGRESS_EVERY_ENV: ""}) == 5.0
    assert progress_every({PROGRESS_EVERY_ENV: " 0.5 "}) == 0.5
    assert progress_every({PROGRESS_EVERY_ENV: "30"}) == 30.0


@pytest.mark.parametrize("raw", ["0", "-1", "five", "nan", "inf"])
def test_a_progress_interval_that_is_not_seconds_is_named_and_5_kept(
    raw: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A value that is not a number of seconds above 0 is named on stderr; 5 s is kept."""
    assert progress_every({PROGRESS_EVERY_ENV: raw}) == 5.0
    err = capsys.readouterr().err
    assert f"{PROGRESS_EVERY_ENV}={raw!r}" in err, err
    assert "every 5 s" in err, err


async def test_progress_lines_come_at_the_set_interval_without_a_terminal(tmp_path: Path) -> None:
    """Piped: a ``progress`` line at most ~1 interval after the last, even while no event comes
    (the interval set to 1 s by ``BULKKM_PROGRESS_EVERY``; the default 5 s is checked above)."""
    # 0.7 of the interval per request (as 3.5 s of 5 s): discovery, then one POST per key
    # manager, with long silences between.
    latency = 0.7 * EVERY
    spec = fleet_spec(clusters=2, svms=2, seed=4, initial_servers=0, faults=Faults(latency=latency))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1, cluster_scope=False)
        code, _, err = await bulkkm(
            "apply",
            str(path),
            "--report",
            str(tmp_path / "r.jsonl"),
            env={PROGRESS_EVERY_ENV: str(EVERY)},
        )
    assert code == 0, err
    events = [orjson.loads(line) for line in err.splitlines()]
    timeline = [e for e in events if e["event"] in ("run_started", "progress", "run_finished")]
    progress = [e for e in timeline if e["event"] == "progress"]
    # The run takes 3 requests of 0.7 intervals one after another: 2 lines at least, and none
    # at all if the variable were ignored (the first at 5 s).
    assert len(progress) >= 2, timeline
    gaps = [(_stamp(b) - _stamp(a)).total_seconds() for a, b in itertools.pairwise(timeline)]
    # The slack (1.5 s, as at 5 s) is for a loaded machine, not a proportion of the interval.
    assert max(gaps) <= EVERY + 1.5, gaps
    last = progress[-1]
    assert {"done", "total", "failed", "rate_per_s", "eta_s", "clusters_done"} <= set(last)
    assert last["clusters"] == 2
    assert "cluster" not in last  # a run-wide line, not one cluster's


async def test_interrupted_run_names_what_is_left_and_its_resume_command_finishes(
    tmp_path: Path,
) -> None:
    """Ctrl-C in wave 1: the summary counts the clusters not started and prints a command that
    finishes the fleet."""
    spec = fleet_spec(clusters=8, svms=2, seed=6, initial_servers=0, faults=Faults(latency=0.1))
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", concurrency=1)
        before = fleet.state()
        report = tmp_path / "r.jsonl"
        process = await start("apply", str(path), "--report", str(report), "--waves", "2,100%")
        await wait_for_lines(report, 2)
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode == 130, err
        text = out.decode()
        assert "clusters not done: 6" in text, text
        assert re.search(r"^  interrupted: 6 \(sim-0002, ", text, re.MULTILINE), text
        command = re.search(r"^to finish the job: (bulkkm apply .*)$", text, re.MULTILINE)
        assert command is not None, text
        argv = shlex.split(command.group(1))
        assert argv[argv.index("--resume") + 1] == str(report)
        assert argv[argv.index("--waves") + 1] == "2,100%"  # the rest goes in waves too
        code, _, err2 = await bulkkm(*argv[1:], "-q")
        assert code == 0, err2
        new = Path(argv[argv.index("--report") + 1])
        assert read_report(new)[0]["waves"] == ["2", "100%"]
        check_invariants(
            inventory=load_inventory(path),
            before=before,
            after=fleet.state(),
            writes=fleet.write_log,
            report=read_report(new),
        )
    assert set(outcomes(read_report(new))) <= {"added", "present"}


async def test_declined_wave_is_recorded_as_declined(tmp_path: Path) -> None:
    """Answering no at the wave prompt: stop reason and later clusters say ``declined``."""
    spec = fleet_spec(clusters=3, svms=1, seed=2, initial_servers=0)
    async with SimulatedFleet(spec) as fleet:

        async def no(_: WaveFinished) -> bool:
            return False

        result = await run_rollout(
            fleet,
            inventory_for(fleet, tmp_path),
            tmp_path,
            waves=parse_waves("1,100%"),
            confirm_wave=no,
        )
    assert result.summary.stop_reason == "declined"
    assert result.summary.exit_code == 3
    later = [line for line in result.lines if line["type"] == "cluster"]
    assert {(line["outcome"], line["reason"]) for line in later} == {
        (Outcome.SKIPPED.value, "declined")
    }


async def test_small_things_users_hit(tmp_path: Path) -> None:
    """--version; plan --show-targets without a report; plan INV --show P refused; one --limit
    line; waves flags checked; -q/-v/--log-format on every command; no slowest for plan."""
    code, out, _ = await bulkkm("--version")
    assert code == 0
    assert re.fullmatch(r"bulkkm \d+\.\d+\.\d+\S*\n", out)
    spec = fleet_spec(clusters=5, svms=1, seed=7, initial_servers=0)
    async with SimulatedFleet(spec) as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml")
        code, out, err = await bulkkm("plan", str(path), "--show-targets")
        assert code == 0, err
        targets = [line for line in out.splitlines() if " would_add" in line]
        assert len(targets) == 10  # 5 clusters x (1 SVM + the cluster scope)
        assert "slowest" not in out
        assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.jsonl")))
        code, out, err = await bulkkm("plan", str(path), "--show", str(tmp_path / "p.json"))
        assert code == 2
        assert len(err.strip().splitlines()) == 1, err
        code, out, err = await bulkkm(
            "plan", str(path), "--limit", "sim-0000", "--log-format", "json"
        )
        assert code == 0, err
        events = [orjson.loads(line) for line in err.splitlines()]
        left_out = [e for e in events if e["event"] == "clusters_left_out"]
        assert [(e["clusters"], e["reason"]) for e in left_out] == [(4, "limit")]
        assert not [e for e in events if e["event"].startswith("cluster_skipped")]
        for args in (
            ("--waves", "10%,5%"),
            ("--waves", "150%"),
            ("--pause-between-waves", "5"),
        ):
            code, _, err = await bulkkm(
                "apply", str(path), "--report", str(tmp_path / "r.jsonl"), *args
            )
            assert code == 2, (args, err)
            assert len(err.strip().splitlines()) == 1, err
        assert fleet.write_log == []
        report = tmp_path / "s.jsonl"
        report.write_text("")
        for argv in (
            ("validate", str(path)),
            ("schema",),
            ("report", "summarize", str(report)),
        ):
            for flags in (("-q",), ("-v",), ("--log-format", "json")):
                code, _, err = await bulkkm(*argv, *flags)
                assert code in (0, 6), (argv, flags, err)
                assert "unrecognized" not in err
