"""Rolling out safely against the simulator: waves, approved plans, maintenance windows."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import structlog.testing

from bulkkm import engine
from bulkkm.events import Event, TargetResult
from bulkkm.planfile import PlanWriter, read_plan
from bulkkm.report import load_resume
from bulkkm.rollout import Window, parse_waves
from bulkkm.simulator import SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout
from tests.invariants import outcomes


def first_requests(fleet: SimulatedFleet) -> list[str]:
    """Clusters in the order they first received a request."""
    seen: dict[str, None] = {}
    for record in fleet.request_log:
        seen.setdefault(record.cluster, None)
    return list(seen)


async def test_failing_canary_stops_the_rollout_after_wave_1(tmp_path: Path) -> None:
    """A canary whose target fails: exit 3, no request to any later cluster, the rest skipped."""
    async with SimulatedFleet(fleet_spec(clusters=6, svms=2, seed=1, initial_servers=0)) as fleet:
        fleet.cluster("sim-0000").kmip_errors["kms-new.example.com:5696"] = "66060338"
        inventory = inventory_for(fleet, tmp_path, key_servers=("kms-new.example.com",))
        result = await run_rollout(fleet, inventory, tmp_path, waves=parse_waves("1,50%,100%"))
        assert {r.cluster for r in fleet.request_log} == {"sim-0000"}
    assert result.summary.exit_code == 3
    later = [line for line in result.lines if line["type"] == "cluster"]
    assert sorted(line["cluster"] for line in later) == [f"sim-000{i}" for i in range(1, 6)]
    assert {(line["outcome"], line["reason"]) for line in later} == {("skipped", "rollout_stopped")}
    assert {line["wave"] for line in later} == {2, 3}
    assert {t["wave"] for t in result.targets()} == {1}
    assert result.lines[0]["waves"] == ["1", "50%", "100%"]


async def test_waves_touch_1_then_5_then_50_clusters_in_order(tmp_path: Path) -> None:
    """1,10%,100% over 50 clusters: wave 1 is done before wave 2 starts, and so on."""
    async with SimulatedFleet(fleet_spec(clusters=50, svms=1, seed=2, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        result = await run_rollout(fleet, inventory, tmp_path, waves=parse_waves("1,10%,100%"))
        log = fleet.request_log
    waves: dict[str, int] = {}
    for t in result.targets():
        waves[t["cluster"]] = t["wave"]
    assert sorted(waves.values()).count(1) == 1
    assert [sum(1 for w in waves.values() if w <= n) for n in (1, 2, 3)] == [1, 5, 50]
    last_of = {n: max(r.at for r in log if waves[r.cluster] == n) for n in (1, 2, 3)}
    first_of = {n: min(r.at for r in log if waves[r.cluster] == n) for n in (1, 2, 3)}
    assert last_of[1] < first_of[2]
    assert last_of[2] < first_of[3]
    assert result.summary.exit_code == 0


async def test_approved_plan_refuses_a_drifted_key_manager(tmp_path: Path) -> None:
    """A server added out of band after the plan: that key manager is skipped as drifted."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=2, seed=3, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path, key_servers=("kms-new.example.com",))
        plan_path = tmp_path / "plan.json"
        writer = PlanWriter.create(plan_path, inventory, datetime.now(UTC))
        events: list[Event] = []
        await engine.run(
            inventory, engine.Options(command=engine.Command.PLAN), [writer, events.append]
        )
        assert fleet.write_log == []
        saved = read_plan(plan_path)
        assert saved.additions == sum(1 for e in events if isinstance(e, TargetResult))
        planned = next(c for c in saved.clusters if c.name == "sim-0001")
        svm = next(km.svm for km in planned.key_managers if km.svm is not None and km.add)
        drifted_km = fleet.cluster("sim-0001").key_manager_of(svm)
        assert drifted_km is not None
        drifted_km.servers["kms-rogue.example.com:5696"] = ()
        result = await run_rollout(fleet, inventory, tmp_path, approved=saved.approved())
    drifted = [t for t in result.targets() if t["reason"] == "drifted"]
    assert [(t["cluster"], t["svm"]) for t in drifted] == [("sim-0001", svm)]
    assert drifted[0]["outcome"] == "skipped"
    assert outcomes(result.lines)["added"] == saved.additions - 1
    assert result.summary.exit_code == 1
    assert result.lines[0]["plan_id"] == saved.plan_id


class FakeClock:
    """A clock a test moves by hand."""

    def __init__(self, now: datetime) -> None:
        """Start at ``now``."""
        self.now = now

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now


async def test_window_closing_mid_run_leaves_a_consistent_report_and_resume_finishes(
    tmp_path: Path,
) -> None:
    """When the window closes, the rest is skipped outside_window; a resume inside completes."""
    window = {"days": ["sat"], "start": "01:00", "end": "05:00", "tz": "UTC"}
    inside = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
    clock = FakeClock(inside)
    spec = fleet_spec(clusters=4, svms=6, seed=4, initial_servers=0)
    async with SimulatedFleet(spec) as fleet:
        inventory = inventory_for(fleet, tmp_path, concurrency=1, extra_defaults={"window": window})
        assert inventory.clusters[0].window == Window(
            days=frozenset({5}), start=time(1), end=time(5), tz="UTC"
        )
        finished = 0

        def close_after_ten(event: Event) -> None:
            nonlocal finished
            if isinstance(event, TargetResult):
                finished += 1
                if finished == 10:
                    clock.now = inside + timedelta(hours=1, minutes=1)

        first = await run_rollout(
            fleet,
            inventory,
            tmp_path,
            name="first.jsonl",
            clock=clock,
            active_clusters=1,
            extra=[close_after_ten],
        )
        reasons = {
            (line["outcome"], line.get("reason")) for line in first.lines if "outcome" in line
        }
        assert ("skipped", "outside_window") in reasons
        assert first.summary.exit_code == 1
        outside = await run_rollout(fleet, inventory, tmp_path, name="outside.jsonl", clock=clock)
        assert {line["reason"] for line in outside.lines if line["type"] == "cluster"} == {
            "outside_window"
        }
        clock.now = inside
        resume = load_resume(tmp_path / "first.jsonl")
        second = await run_rollout(
            fleet,
            inventory,
            tmp_path,
            name="second.jsonl",
            clock=clock,
            resume=resume,
        )
    assert set(outcomes(second.lines)) == {"added"}
    assert second.summary.exit_code == 0


async def test_ignore_windows_changes_clusters_outside_and_says_so(tmp_path: Path) -> None:
    """--ignore-windows applies outside the window and records it in the run line."""
    window = {"days": ["sat"], "start": "01:00", "end": "05:00", "tz": "UTC"}
    clock = FakeClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
    async with SimulatedFleet(fleet_spec(clusters=2, svms=1, seed=5, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path, extra_defaults={"window": window})
        result = await run_rollout(fleet, inventory, tmp_path, clock=clock, ignore_windows=True)
    assert set(outcomes(result.lines)) == {"added"}
    assert result.lines[0]["ignore_windows"] is True


async def test_a_resumed_rollout_pauses_only_after_waves_that_changed_something(
    tmp_path: Path,
) -> None:
    """Resumed, wave 1 was done before (all carried over): no pause after it, it is said so;
    wave 2 adds servers: the pause follows it as asked."""
    pause = 1.0
    async with SimulatedFleet(fleet_spec(clusters=3, svms=2, seed=5, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        first = await run_rollout(fleet, inventory.only(["sim-0000"]), tmp_path, name="r1.jsonl")
        assert set(outcomes(first.lines)) == {"added"}
        with structlog.testing.capture_logs() as logs:
            second = await run_rollout(
                fleet,
                inventory,
                tmp_path,
                name="r2.jsonl",
                resume=load_resume(tmp_path / "r1.jsonl"),
                waves=parse_waves("1,2,100%"),
                pause_between_waves=pause,
            )
    assert second.summary.exit_code == 0
    waves = {(type(e).__name__, e.number): e.at for e in second.events if hasattr(e, "number")}
    after_carried = waves["WaveStarted", 2] - waves["WaveFinished", 1]
    after_changes = waves["WaveStarted", 3] - waves["WaveFinished", 2]
    assert after_carried.total_seconds() < pause / 2, after_carried
    assert after_changes.total_seconds() >= pause, after_changes
    skipped = [entry for entry in logs if entry["event"] == "pause_skipped"]
    assert [entry["wave"] for entry in skipped] == [1]
