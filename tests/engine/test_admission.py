"""Admission: as many clusters at once as the connection budget allows, in rollout order."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bulkkm import engine
from bulkkm.engine._admission import Admission, default_max_connections
from bulkkm.events import ClusterDiscovered, Event, TargetResult
from bulkkm.simulator import Faults, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout
from tests.invariants import outcomes


class ActiveClusters:
    """Counts clusters discovered and not yet done, from the event stream."""

    def __init__(self) -> None:
        """Nothing seen yet."""
        self.left: dict[str, int] = {}
        self.order: list[str] = []
        self.peak = 0

    def __call__(self, event: Event) -> None:
        """A cluster becomes active when discovered, done with its last target's line."""
        if isinstance(event, ClusterDiscovered):
            self.left[event.cluster] = event.targets
            self.order.append(event.cluster)
        elif isinstance(event, TargetResult) and event.cluster in self.left:
            self.left[event.cluster] -= 1
            if not self.left[event.cluster]:
                del self.left[event.cluster]
        self.peak = max(self.peak, len(self.left))


def _fleet(clusters: int) -> SimulatedFleet:
    """Clusters whose answers take long enough for every admitted one to overlap."""
    spec = fleet_spec(
        clusters=clusters,
        svms=2,
        seed=21,
        faults=Faults(latency=0.2),
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
    )
    return SimulatedFleet(spec)


@pytest.mark.parametrize(("budget", "concurrency", "expected"), [(40, 2, 20), (1000, 1, 90)])
async def test_clusters_at_once_are_what_the_connection_budget_allows(
    tmp_path: Path, budget: int, concurrency: int, expected: int
) -> None:
    """budget / concurrency clusters progress at once (90 here, past the old fixed 64)."""
    active = ActiveClusters()
    async with asyncio.timeout(60), _fleet(90) as fleet:
        inventory = inventory_for(fleet, tmp_path, concurrency=concurrency)
        result = await run_rollout(
            fleet, inventory, tmp_path, max_connections=budget, extra=[active]
        )
        peaks = [fleet.peak_in_flight(c.name) for c in fleet.clusters]
    assert set(outcomes(result.lines)) == {"added"}
    assert active.peak == expected
    assert max(peaks) <= concurrency


async def test_clusters_start_in_rollout_order(tmp_path: Path) -> None:
    """Admitted one by one as room frees up, clusters are discovered in inventory order."""
    active = ActiveClusters()
    async with asyncio.timeout(60), _fleet(12) as fleet:
        inventory = inventory_for(fleet, tmp_path, concurrency=2)
        await run_rollout(fleet, inventory, tmp_path, max_connections=4, extra=[active])
    assert active.peak == 2
    # Two at a time: each pair's discoveries may finish in either order, pairs may not.
    names = [c.name for c in inventory.clusters]
    assert [set(active.order[i : i + 2]) for i in range(0, 12, 2)] == [
        set(names[i : i + 2]) for i in range(0, 12, 2)
    ]


def _never() -> bool:
    """A run that does not stop."""
    return False


async def test_a_cluster_larger_than_the_budget_runs_alone() -> None:
    """A cluster asking more connections than the budget holds all of it, not forever none."""
    admission = Admission(4)
    ticket = await admission.admit(16, stopped=_never)
    assert ticket is not None
    assert ticket.connections == 4
    assert not admission.fits(1)
    admission.release(ticket)
    assert admission.fits(4)


async def test_a_stop_wakes_the_waiting_dispatcher() -> None:
    """Waiting for room, admission gives up as soon as the run stops."""
    admission = Admission(2)
    assert await admission.admit(2, stopped=_never) is not None
    stopped = False
    waiting = asyncio.ensure_future(admission.admit(1, stopped=lambda: stopped))
    await asyncio.sleep(0)
    assert not waiting.done()
    stopped = True
    admission.wake()
    async with asyncio.timeout(1):
        assert await waiting is None
    assert admission.in_use == 2


async def test_the_cluster_cap_holds_whatever_the_connections() -> None:
    """``active_clusters`` caps clusters at once even with connections to spare."""
    admission = Admission(100, clusters=1)
    assert await admission.admit(1, stopped=_never) is not None
    assert not admission.fits(1)


async def test_large_clusters_are_let_in_by_their_targets() -> None:
    """Once discovered clusters show 80 targets each, a 200-target budget admits 2 at once."""
    admission = Admission(1000, targets=200)
    first = await admission.admit(4, stopped=_never)
    second = await admission.admit(4, stopped=_never)
    assert first is not None
    assert second is not None
    assert not admission.fits(4)  # 2 x the prior 100: full until discovery says
    admission.discovered(first, 80)
    admission.discovered(second, 80)
    assert admission.targets_held == 160
    assert not admission.fits(4)  # 160 + the mean, 80, is past 200
    admission.release(first)
    assert admission.fits(4)


async def test_small_clusters_fill_the_connection_budget() -> None:
    """Clusters of 8 targets: the targets budget is no limit, the connections are."""
    admission = Admission(40, targets=16_000)
    first = await admission.admit(4, stopped=_never)
    assert first is not None
    admission.discovered(first, 8)
    tickets = [await admission.admit(4, stopped=_never) for _ in range(9)]
    assert all(tickets)
    assert not admission.fits(4)


def test_the_default_budget_is_bounded_by_the_machine() -> None:
    """At most 4,096, and within the file descriptors the process may open."""
    import resource  # noqa: PLC0415 -- only this test needs it

    budget = default_max_connections()
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 16 <= budget <= engine.DEFAULT_MAX_CONNECTIONS
    assert soft == resource.RLIM_INFINITY or budget <= max(soft - 256, 16)


def test_a_low_soft_limit_on_open_files_is_raised_for_the_budget() -> None:
    """A soft limit of 1,024 (a common default) is raised toward the hard limit first."""
    import resource  # noqa: PLC0415 -- only this test needs it

    script = (
        "import resource\n"
        "from bulkkm.engine._admission import default_max_connections\n"
        "_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))\n"
        "budget = default_max_connections()\n"
        "print(budget, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    budget, soft, hard = (int(word) for word in out.split())
    wanted = engine.DEFAULT_MAX_CONNECTIONS + 256
    if hard == resource.RLIM_INFINITY or hard >= wanted:
        assert (budget, soft) == (engine.DEFAULT_MAX_CONNECTIONS, wanted)  # not 1,024 - 256
    else:
        assert (budget, soft) == (max(hard - 256, 16), hard)
