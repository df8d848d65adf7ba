"""Chaos scenarios: generated fault profiles over small simulated fleets, and what must hold.

A ``Chaos`` is a fleet (3-8 clusters x 2-5 SVMs) where each cluster misbehaves its own way
(slow, flaky, hanging, dead, capping connections, answering applied writes as
failures, or a mix) and has its own ``concurrency``.
``run_chaos`` applies the rollout through the engine, with short request timeouts and a
short retry policy, then checks every invariant; then it heals the fleet, runs again, and
checks that the fleet converges with nothing written twice across both runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from bulkkm.events import Retrying
from bulkkm.inventory import load_inventory
from bulkkm.retry import RetryPolicy
from bulkkm.simulator import Faults, FleetSpec, SimulatedFleet
from tests.engine.conftest import Rollout, run_rollout
from tests.invariants import (
    check_invariants,
    check_no_blind_repost,
    check_report,
    outcomes,
)

__all__ = ["CHAOS_SETTINGS", "Chaos", "ClusterChaos", "chaos", "run_chaos"]

REQUEST_TIMEOUT: Final = 0.5
"""Seconds per request (the inventory's ``limits.timeout``): a hang costs this much."""
CHAOS_RETRY: Final = RetryPolicy(
    attempts=4, timeout=4.0, wait_initial=0.005, wait_max=0.02, wait_jitter=0.005
)
DONE: Final = frozenset({"added", "present", "blocked"})
"""Outcomes of a target that needs nothing more (blocked: ONTAP cannot take it)."""

_COMMON: Final[dict[str, Any]] = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": (HealthCheck.too_slow,),
}
settings.register_profile("bulkkm-chaos-ci", max_examples=24, derandomize=True, **_COMMON)
settings.register_profile(
    "bulkkm-chaos-long",
    max_examples=int(os.environ.get("BULKKM_CHAOS_EXAMPLES") or 500),
    derandomize=False,
    **_COMMON,
)
CHAOS_SETTINGS: Final = settings.get_profile(
    "bulkkm-chaos-long" if os.environ.get("BULKKM_CHAOS_EXAMPLES") else "bulkkm-chaos-ci"
)
"""Derandomized and short in CI; ``BULKKM_CHAOS_EXAMPLES=N`` for N random profiles."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterChaos:
    """How one cluster misbehaves, and the concurrency the inventory gives bulkkm on it."""

    kind: str
    faults: Faults
    concurrency: int

    @property
    def answers_in_time(self) -> bool:
        """Whether the cluster never works on a request after bulkkm gave up on it.

        A hung request, or an answer slower than the timeout, keeps the server busy after
        the client has left: its in-flight count and its late writes are then not bulkkm's.
        """
        f = self.faults
        return f.hang_rate == 0 and f.latency + f.jitter < 0.8 * REQUEST_TIMEOUT

    @property
    def healthy(self) -> bool:
        """Whether every target of this cluster must end done."""
        f = self.faults
        cap_ok = f.max_in_flight is None or f.max_in_flight >= self.concurrency
        return (
            cap_ok
            and not f.dead
            and self.answers_in_time
            and f.transient_rate == f.error500_rate == f.reset_rate == f.ambiguous_rate == 0
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Chaos:
    """A fleet and its faults."""

    clusters: tuple[ClusterChaos, ...]
    svms: int
    seed: int
    job_mode: bool
    initial_servers: int | None
    key_servers: str


KEY_SERVERS: Final[Mapping[str, Sequence[object]]] = {
    "one": ("kms-new.example.com",),
    "two": ("kms-new.example.com", "kms-dr.example.com:5697"),
    "secondaries": (
        {
            "server": "kms-a.example.com",
            "secondary_key_servers": ["kms-a-dr.example.com"],
            "password": "file:kmip.password",
        },
        "kms-b.example.com",
    ),
}
_RATE = st.sampled_from((0.0, 0.0, 0.05, 0.2, 0.5))
_KINDS = ("healthy", "flaky", "flaky", "hanging", "slow", "capped", "dead", "lying", "mixed")


@st.composite
def cluster_chaos(draw: st.DrawFn) -> ClusterChaos:
    """One cluster's trouble."""
    concurrency = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(_KINDS))
    latency = draw(st.sampled_from((0.0, 0.002, 0.01)))
    match kind:
        case "healthy":
            faults = Faults(latency=latency)
        case "dead":
            faults = Faults(dead=True)
        case "slow":
            faults = Faults(
                latency=draw(st.sampled_from((0.05, 0.2))), jitter=draw(st.sampled_from((0, 0.4)))
            )
        case "capped":
            cap = draw(st.integers(1, concurrency + 1))
            faults = Faults(latency=0.01, jitter=0.01, max_in_flight=cap)
        case "hanging":
            faults = Faults(latency=latency, hang_rate=draw(st.sampled_from((0.05, 0.2))))
        case "flaky":
            faults = Faults(
                latency=latency,
                transient_rate=draw(_RATE),
                error500_rate=draw(_RATE),
                reset_rate=draw(_RATE),
                ambiguous_rate=draw(_RATE),
            )
        case "lying":  # writes applied, then answered as if they might not have been
            faults = Faults(
                latency=latency,
                job_error500_rate=draw(_RATE),
                applied_error500_rate=draw(_RATE),
                garbled_201_rate=draw(_RATE),
                empty_204_rate=draw(_RATE),
                jobless_202_rate=draw(_RATE),
            )
        case _:
            faults = Faults(
                latency=latency,
                jitter=draw(st.sampled_from((0.0, 0.01))),
                applied_error500_rate=draw(_RATE),
                job_error500_rate=draw(_RATE),
                transient_rate=draw(_RATE),
                error500_rate=draw(_RATE),
                reset_rate=draw(st.sampled_from((0.0, 0.05, 0.2, 1.0))),
                ambiguous_rate=draw(_RATE),
                hang_rate=draw(st.sampled_from((0.0, 0.05))),
                max_in_flight=draw(st.sampled_from((None, concurrency, max(1, concurrency - 1)))),
            )
    return ClusterChaos(kind=kind, faults=faults, concurrency=concurrency)


@st.composite
def chaos(draw: st.DrawFn) -> Chaos:
    """A small fleet, each cluster with its own trouble."""
    return Chaos(
        clusters=tuple(draw(st.lists(cluster_chaos(), min_size=3, max_size=8))),
        svms=draw(st.integers(2, 5)),
        seed=draw(st.integers(0, 2**16)),
        job_mode=draw(st.sampled_from((False, False, True))),
        initial_servers=draw(st.sampled_from((None, 0, 0, 1, 2))),
        key_servers=draw(st.sampled_from(sorted(KEY_SERVERS))),
    )


def _write_inventory(fleet: SimulatedFleet, scenario: Chaos, directory: Path) -> Path:
    """The fleet's inventory with short timeouts and each cluster's own concurrency."""
    (directory / "kmip.password").write_text("chaos-kmip-password\n")
    path = fleet.write_inventory(
        directory / "fleet.yaml",
        key_servers=KEY_SERVERS[scenario.key_servers],
        extra_defaults={"limits": {"timeout": REQUEST_TIMEOUT}},
    )
    document = yaml.safe_load(path.read_text())
    for entry, plan in zip(document["clusters"], scenario.clusters, strict=True):
        entry["limits"] = {"concurrency": plan.concurrency}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _troubled(result: Rollout) -> tuple[set[str], set[str]]:
    """Clusters where some request failed, and those where one timed out (was abandoned)."""
    failed: set[str] = set()
    timed_out: set[str] = set()
    errors = [(e.cluster, e.error.category.value) for e in result.events if isinstance(e, Retrying)]
    errors += [
        (str(line["cluster"]), line["error"]["category"])
        for line in result.lines
        if line.get("error") and line["error"]["category"] != "precondition"  # nothing sent
    ]
    for cluster, category in errors:
        failed.add(cluster)
        if category == "timeout":
            timed_out.add(cluster)
    return failed, timed_out


def _check_clusters(fleet: SimulatedFleet, scenario: Chaos, result: Rollout) -> None:
    """What each cluster's kind of trouble lets us expect of its lines and its load.

    The cluster counts a request in flight until it has answered it, so a request bulkkm
    abandoned (timed out, or cancelled beside a failed one) still counts while bulkkm sends
    the next: the peak is checked where no request failed, and on capped clusters where none
    timed out. A timed-out POST may still be applied afterwards, when nothing can tell it from
    a lost one: the no-re-POST rule is checked where none timed out. (A loaded machine can
    make any cluster time out; such clusters are left out rather than made flaky.)
    """
    cluster_lines = {
        str(line["cluster"]): line for line in result.lines if line["type"] == "cluster"
    }
    failed, timed_out = _troubled(result)
    for sim, plan in zip(fleet.clusters, scenario.clusters, strict=True):
        name = sim.name
        mine = [t for t in result.targets() if t["cluster"] == name]
        if plan.faults.dead:
            assert name in cluster_lines, f"{name} is dead but has no cluster line"
            assert cluster_lines[name]["error"]["category"] == "transport", cluster_lines[name]
            assert not mine, f"{name} is dead but has target lines"
            assert fleet.requests(name) == {}
        if plan.healthy:
            assert name not in cluster_lines, f"healthy {name} failed: {cluster_lines[name]}"
            assert set(outcomes(mine)) <= DONE, f"healthy {name}: {outcomes(mine)}"
        peak = fleet.peak_in_flight(name)
        if name not in failed:
            assert peak <= plan.concurrency, f"{name}: {peak} in flight > {plan.concurrency}"
        cap = plan.faults.max_in_flight
        capped = plan.kind == "capped" and cap is not None and cap >= plan.concurrency
        if capped and name not in timed_out:
            assert fleet.refused(name) == 0, f"{name}: bulkkm went over the cluster's cap"
            assert peak <= plan.concurrency, f"{name}: {peak} in flight > {plan.concurrency}"
        if plan.answers_in_time and name not in timed_out and not scenario.job_mode:
            check_no_blind_repost([w for w in fleet.write_log if w.cluster == name])


async def run_chaos(scenario: Chaos, directory: Path) -> None:
    """Apply the rollout under the scenario's faults, then again healed; check everything."""
    spec = FleetSpec(
        clusters=len(scenario.clusters),
        svms=scenario.svms,
        seed=scenario.seed,
        cluster_faults={f"sim-{i:04d}": c.faults for i, c in enumerate(scenario.clusters)},
        job_mode=scenario.job_mode,
        job_delay=0.02,
        initial_servers=scenario.initial_servers,
    )
    async with SimulatedFleet(spec) as fleet:
        inventory = load_inventory(_write_inventory(fleet, scenario, directory))
        first = await run_rollout(
            fleet, inventory, directory, name="chaos.jsonl", retry=CHAOS_RETRY
        )
        check_report(first.lines)
        _check_clusters(fleet, scenario, first)

        for sim in fleet.clusters:
            fleet.set_faults(sim.name, Faults())
        healed = await run_rollout(
            fleet, inventory, directory, name="healed.jsonl", retry=CHAOS_RETRY
        )
        check_report(healed.lines)
        assert not [line for line in healed.lines if line["type"] == "cluster"]
        assert set(outcomes(healed.lines)) <= DONE, outcomes(healed.lines)
        # Over both runs: nothing applied twice, every write one the inventory asked for.
        check_invariants(
            inventory=inventory,
            before=first.before,
            after=healed.after,
            writes=fleet.write_log,
            report=healed.lines,
        )
