"""Subscribers cannot stop or slow a run: one that raises or blocks is detached, reported.

End to end against the simulator (each run compared with a control run on an identical
fleet), then the fan-out on its own for what a small fleet cannot provoke (a full queue).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from bulkkm.events import Event, RunFinished, RunStarted, Subscriber, TargetResult, TargetsKnown
from bulkkm.fanout import Fanout
from bulkkm.simulator import SimulatedFleet
from tests.engine.conftest import Rollout, fleet_spec, inventory_for, run_rollout
from tests.invariants import key_managers, servers_of


async def rollout(tmp_path: Path, name: str, extra: Sequence[Subscriber] = ()) -> Rollout:
    """apply on a fresh fleet, the same fleet every time (same seed), invariants checked."""
    spec = fleet_spec(clusters=6, svms=3, seed=7, initial_servers=1)
    folder = tmp_path / name
    folder.mkdir()
    async with SimulatedFleet(spec) as fleet:
        inventory = inventory_for(fleet, folder)
        return await run_rollout(fleet, inventory, folder, extra=extra)


def what_was_done(result: Rollout) -> dict[str, Any]:
    """A report without what differs between two runs of one fleet (ids, times, paths)."""
    varies = {"run_id", "started_at", "finished_at", "duration_ms", "inventory", "inventory_sha256"}
    lines = [{k: v for k, v in line.items() if k not in varies} for line in result.lines]
    return {
        "run": lines[0],
        "targets": sorted(map(repr, lines[1:-1])),
        "summary": lines[-1],
        "exit_code": result.summary.exit_code,
        "servers": {key: servers_of(km) for key, km in key_managers(result.after).items()},
    }


def detached(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    """The ``subscriber_detached`` log entries."""
    return [entry for entry in logs if entry["event"] == "subscriber_detached"]


async def test_subscriber_that_always_raises_is_detached_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A subscriber raising on every event: called once, detached, the run as without it."""
    calls: list[Event] = []

    def broken(event: Event) -> None:
        calls.append(event)
        raise RuntimeError("front end bug")

    async with asyncio.timeout(60):
        control = await rollout(tmp_path, "control")
        with capture_logs() as logs:
            result = await rollout(tmp_path, "broken", extra=[broken])
    assert what_was_done(result) == what_was_done(control)
    assert result.summary.exit_code == control.summary.exit_code
    assert [type(e) for e in calls] == [RunStarted]
    (entry,) = detached(logs)
    assert entry["subscriber"].endswith("broken")
    assert entry["why"] == "raised RuntimeError: front end bug"
    assert entry["stopping"] is False
    assert result.summary.stop_reason is None


async def test_subscriber_that_raises_once_is_detached_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """A subscriber failing on its first target: detached there, the run goes on unchanged."""
    seen: list[Event] = []

    def flaky(event: Event) -> None:
        seen.append(event)
        if isinstance(event, TargetResult) and sum(isinstance(e, TargetResult) for e in seen) == 1:
            raise ValueError("once")

    async with asyncio.timeout(60):
        control = await rollout(tmp_path, "control")
        with capture_logs() as logs:
            result = await rollout(tmp_path, "flaky", extra=[flaky])
    assert what_was_done(result) == what_was_done(control)
    assert isinstance(seen[-1], TargetResult)  # nothing after the event it failed on
    assert len(seen) < len(result.events)
    (entry,) = detached(logs)
    assert entry["why"] == "raised ValueError: once"


class Blocked:
    """An async subscriber whose first event blocks it until it is released or cancelled."""

    def __init__(self) -> None:
        """Not called yet."""
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        """Never set by the test: only cancellation ends the wait."""
        self.unblocked = False
        self.cancelled = False
        self.received = 0

    async def __call__(self, event: Event) -> None:
        """Take an event; the first one holds us up."""
        self.received += 1
        self.entered.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        self.unblocked = True


async def test_a_blocked_async_subscriber_does_not_hold_up_the_run(tmp_path: Path) -> None:
    """An async subscriber stuck for good: the run ends (summary delivered, engine returned)
    while it is still stuck, with the outcomes of a run without it; it is detached at the end."""
    blocked = Blocked()
    at_summary: list[tuple[bool, bool]] = []

    def summary_watch(event: Event) -> None:
        if isinstance(event, RunFinished):
            at_summary.append((blocked.entered.is_set(), blocked.unblocked))

    async with asyncio.timeout(60):
        control = await rollout(tmp_path, "control")
        with capture_logs() as logs:
            result = await rollout(tmp_path, "blocked", extra=[blocked, summary_watch])
    assert what_was_done(result) == what_was_done(control)
    assert at_summary == [(True, False)]  # the summary reached the others while it was stuck
    assert blocked.received == 1
    (entry,) = detached(logs)
    assert entry["subscriber"] == "Blocked"
    assert entry["why"].startswith("still busy")
    assert blocked.cancelled  # cancelled by the run, not left running behind it
    assert not blocked.unblocked


async def test_a_steady_async_subscriber_gets_every_event_in_order(tmp_path: Path) -> None:
    """An async subscriber sees what the sync ones see: every event, seq 1, 2, 3 …, one run id."""
    got: list[Event] = []

    async def steady(event: Event) -> None:
        await asyncio.sleep(0)
        got.append(event)

    async with asyncio.timeout(60):
        with capture_logs() as logs:
            result = await rollout(tmp_path, "steady", extra=[steady])
    assert got == result.events
    assert [e.seq for e in got] == list(range(1, len(got) + 1))
    assert {e.run_id for e in got} == {result.lines[0]["run_id"]}
    assert all(a.at <= b.at for a, b in itertools.pairwise(got))
    assert not detached(logs)


# --- the fan-out on its own ------------------------------------------------------------


def events(n: int) -> list[Event]:
    """``n`` small events."""
    return [TargetsKnown(targets=i) for i in range(n)]


async def test_an_async_subscriber_that_falls_behind_is_detached_without_waiting() -> None:
    """A full queue detaches its subscriber at once; publishing never waits on it."""
    release = asyncio.Event()
    taken: list[Event] = []
    why: list[str] = []

    async def slow(event: Event) -> None:
        taken.append(event)
        await release.wait()

    others: list[Event] = []
    fanout = Fanout(
        [slow, others.append], run_id="r", on_detach=lambda _, w: why.append(w), queue_size=2
    )
    with capture_logs():
        for event in events(2):
            fanout.publish(event)
        await asyncio.sleep(0)  # slow takes the first and blocks
        for event in events(3):
            fanout.publish(event)
    assert why == ["too slow: 2 events behind"]
    assert len(others) == 5
    assert fanout.subscribers == (others.append,)
    await fanout.drain()
    assert len(taken) == 1


async def test_an_async_subscriber_that_raises_is_detached() -> None:
    """An exception in an async subscriber's task detaches it and reaches nobody else."""
    why: list[str] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("boom")

    fanout = Fanout([broken], run_id="r", on_detach=lambda _, w: why.append(w))
    with capture_logs():
        fanout.publish(TargetsKnown(targets=1))
        await fanout.drain()
    assert why == ["raised RuntimeError: boom"]
    assert fanout.subscribers == ()


async def test_the_drain_waits_for_queued_events_then_no_longer() -> None:
    """At the end a busy async subscriber gets ``drain_seconds``; a quick one finishes."""
    quick: list[Event] = []

    async def fast(event: Event) -> None:
        await asyncio.sleep(0)
        quick.append(event)

    async def stuck(event: Event) -> None:
        await asyncio.Event().wait()

    fanout = Fanout([fast, stuck], run_id="r", drain_seconds=0.05)
    with capture_logs() as logs:
        for event in events(10):
            fanout.publish(event)
        await fanout.drain()
    assert [e.seq for e in quick] == list(range(1, 11))
    (entry,) = detached(logs)
    assert entry["subscriber"].endswith("stuck")
    assert entry["why"] == "still busy 0.05 s after the run ended (9 events not taken)"


def test_publish_stamps_run_id_sequence_and_time() -> None:
    """Each event comes out with the run id, the next seq and a time; emit sites pass none."""
    seen: list[Event] = []
    fanout = Fanout([seen.append], run_id="run-1")
    stamped = [fanout.publish(e) for e in events(3)]
    assert stamped == seen
    assert [(e.run_id, e.seq) for e in seen] == [("run-1", 1), ("run-1", 2), ("run-1", 3)]
    assert seen[0].at <= seen[1].at <= seen[2].at
