"""Writes whose fate an answer leaves unknown, one cluster under two names, and Ctrl-C.

Each case runs bulkkm against the simulator over real TLS sockets and checks what a user
would: the report's outcomes, the fleet's write log (one POST per server, never a second
once one applied) and the fleet's final state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from bulkkm import engine
from bulkkm.events import Event, Retrying
from bulkkm.inventory import load_inventory
from bulkkm.report import ReportWriter
from bulkkm.simulator import Faults, Mode, Scope, SimKeyManager, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout
from tests.invariants import (
    check_invariants,
    check_no_blind_repost,
    check_report,
    key_managers,
    outcomes,
    servers_of,
)

NORMALIZED = ("kms-new.example.com:5696", "kms-dr.example.com:5697")
GRACE = 30.0
"""Far longer than an interrupted run takes, so only waiting it out could come near it."""


def posts_per_server(fleet: SimulatedFleet) -> Counter[tuple[str, str, str]]:
    """How many times each (cluster, key manager, server) was POSTed."""
    return Counter(
        (w.cluster, w.key_manager_uuid, w.server) for w in fleet.write_log if w.method == "POST"
    )


def assert_added_once(fleet: SimulatedFleet, targets: list[dict[str, Any]]) -> None:
    """Every target `added`, with one POST of its server, applied; nothing POSTed twice."""
    assert targets
    assert {t["outcome"] for t in targets} == {"added"}, Counter(t["outcome"] for t in targets)
    posts = posts_per_server(fleet)
    assert set(posts.values()) == {1}, [k for k, n in posts.items() if n > 1]
    assert {(t["cluster"], t["key_manager_uuid"], t["server"]) for t in targets} == set(posts)
    assert all(w.applied for w in fleet.write_log)
    check_no_blind_repost(fleet.write_log)


def small_fleet(**faults: Any) -> SimulatedFleet:
    """Two clusters of two SVMs, every key manager external and empty, with ``faults``."""
    job_mode = bool(faults.pop("job_mode", False))
    return SimulatedFleet(
        fleet_spec(
            clusters=2,
            svms=2,
            seed=21,
            initial_servers=0,
            external_ratio=1.0,
            onboard_ratio=0.0,
            job_mode=job_mode,
            faults=Faults(**faults),
        )
    )


async def test_job_poll_failing_with_500_is_settled_without_posting_again(tmp_path: Path) -> None:
    """202, then every poll of the (applied) job answers 500: read back, `added`, one POST."""
    async with asyncio.timeout(60), small_fleet(job_error500_rate=1.0, job_mode=True) as fleet:
        # Polls are retried until the job's deadline (4 request timeouts): 4 s here.
        quick = {"limits": {"timeout": 1}}
        inventory = inventory_for(fleet, tmp_path, extra_defaults=quick)
        result = await run_rollout(fleet, inventory, tmp_path)
        assert_added_once(fleet, result.targets())
        for (_, svm), km in key_managers(result.after).items():
            assert set(NORMALIZED) <= servers_of(km), svm
    assert result.summary.exit_code == 0


@pytest.mark.parametrize(
    "fault",
    ["applied_error500_rate", "garbled_201_rate", "empty_204_rate", "jobless_202_rate"],
    ids=["500-after-apply", "201-not-json", "204-empty", "202-without-job-link"],
)
async def test_applied_post_with_a_wrong_answer_is_read_back_and_added(
    tmp_path: Path, fault: str
) -> None:
    """A POST applied but answered 500, 201 not JSON, 204 or 202 without a job: `added`, once."""
    async with asyncio.timeout(60), small_fleet(**{fault: 1.0}) as fleet:
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
        assert_added_once(fleet, result.targets())
        for (_, svm), km in key_managers(result.after).items():
            assert set(NORMALIZED) <= servers_of(km), svm
    assert {t["attempts"] for t in result.targets()} == {1}
    assert result.summary.exit_code == 0


async def test_every_kind_of_unknown_fate_mixed_ends_added_and_written_once(
    tmp_path: Path,
) -> None:
    """20 clusters where POSTs and polls fail in every way, applied or not: all `added`."""
    faults = Faults(
        transient_rate=0.1,
        error500_rate=0.05,
        reset_rate=0.05,
        ambiguous_rate=0.1,
        applied_error500_rate=0.1,
        garbled_201_rate=0.1,
        empty_204_rate=0.1,
        jobless_202_rate=0.1,
    )
    spec = fleet_spec(clusters=20, svms=4, seed=5, initial_servers=0, faults=faults)
    async with asyncio.timeout(60), SimulatedFleet(spec) as fleet:
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
        check_no_blind_repost(fleet.write_log)
        applied = Counter(
            (w.cluster, w.key_manager_uuid, w.server) for w in fleet.write_log if w.applied
        )
    assert set(outcomes(result.lines)) == {"added"}
    assert set(applied.values()) == {1}


def with_alias(path: Path, fleet: SimulatedFleet, name: str, alias: str) -> Path:
    """The inventory at ``path`` with cluster ``name`` listed again as ``alias``, by host name."""
    document = yaml.safe_load(path.read_text())
    port = fleet.cluster(name).address.rsplit(":", 1)[1]
    document["clusters"].append(
        {"name": alias, "address": f"localhost:{port}", "svms": "all", "cluster_scope": True}
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


async def test_one_cluster_under_two_addresses_is_written_once(tmp_path: Path) -> None:
    """`127.0.0.1:PORT` and `localhost:PORT`: the second is refused as `duplicate_cluster`."""
    async with asyncio.timeout(60), small_fleet() as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", key_servers=NORMALIZED)
        inventory = load_inventory(with_alias(path, fleet, "sim-0000", "sim-0000-by-name"))
        # One cluster at a time, in inventory order: the alias is always the one refused.
        result = await run_rollout(fleet, inventory, tmp_path, active_clusters=1)
        assert_added_once(fleet, result.targets())
    (line,) = [line for line in result.lines if line["type"] == "cluster"]
    assert (line["cluster"], line["outcome"], line["reason"]) == (
        "sim-0000-by-name",
        "failed",
        "duplicate_cluster",
    )
    assert "sim-0000" in line["error"]["message"]
    assert {t["cluster"] for t in result.targets()} == {"sim-0000", "sim-0001"}
    assert result.summary.exit_code == 1


async def test_one_cluster_under_two_addresses_at_once_is_written_once(tmp_path: Path) -> None:
    """Both names discovered at the same time: one is refused, nothing is POSTed twice."""
    async with asyncio.timeout(60), small_fleet() as fleet:
        path = fleet.write_inventory(tmp_path / "fleet.yaml", key_servers=NORMALIZED)
        inventory = load_inventory(with_alias(path, fleet, "sim-0000", "sim-0000-by-name"))
        result = await run_rollout(fleet, inventory, tmp_path, check=False)
        assert_added_once(fleet, result.targets())
    check_report(result.lines)
    (line,) = [line for line in result.lines if line["type"] == "cluster"]
    assert (line["outcome"], line["reason"]) == ("failed", "duplicate_cluster")
    other = ({"sim-0000", "sim-0000-by-name"} - {line["cluster"]}).pop()
    assert other in line["error"]["message"]
    assert {t["cluster"] for t in result.targets()} == {other, "sim-0001"}


async def test_key_manager_listed_under_two_svms_is_planned_once(tmp_path: Path) -> None:
    """A cluster listing one key-manager uuid for two SVMs: one POST, each server named once."""
    async with asyncio.timeout(60), small_fleet() as fleet:
        sim = fleet.cluster("sim-0000")
        first = sim.key_manager_of("svm000")
        second = sim.key_manager_of("svm001")
        assert first is not None
        assert second is not None
        assert second.svm is not None
        del sim.key_managers[second.uuid]
        # The same uuid (and the same configuration) answered under svm001 as well.
        sim.key_managers["listed-twice"] = SimKeyManager(
            uuid=first.uuid,
            scope=Scope.SVM,
            svm=second.svm,
            mode=Mode.EXTERNAL,
            servers=first.servers,
        )
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
        posts = [w for w in fleet.write_log if w.key_manager_uuid == first.uuid]
    assert sorted(w.server for w in posts) == sorted(NORMALIZED)
    assert all(w.applied and w.code is None for w in posts)
    by_svm: dict[str | None, set[str]] = {}
    for t in result.targets():
        if t["cluster"] == "sim-0000":
            by_svm.setdefault(t["svm"], set()).add(t["outcome"])
    assert by_svm == {None: {"added"}, "svm000": {"added"}, "svm001": {"blocked"}}
    twice = [t for t in result.targets() if t["svm"] == "svm001" and t["cluster"] == "sim-0000"]
    assert {t["reason"] for t in twice} == {"duplicate_key_manager"}
    assert all("svm000" in t["error"]["message"] for t in twice)


async def test_no_request_starts_after_an_interrupt(tmp_path: Path) -> None:
    """Ctrl-C while batches wait to retry: no POST, no retry, no new cluster starts after it."""
    spec = fleet_spec(
        clusters=6,
        svms=3,
        seed=8,
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
        faults=Faults(transient_rate=1.0),
    )
    policy = engine.RetryPolicy(
        attempts=50, timeout=60.0, wait_initial=0.3, wait_max=0.4, wait_jitter=0.05
    )
    control = engine.RunControl()
    interrupted: list[float] = []

    def interrupt_on_tenth_retry(event: Event) -> None:
        """Press Ctrl-C once ten retries are waiting."""
        retries = sum(1 for e in events if isinstance(e, Retrying))
        if isinstance(event, Retrying) and retries >= 10 and not interrupted:
            control.interrupt()
            interrupted.append(time.monotonic())

    events: list[Event] = []
    async with asyncio.timeout(60), SimulatedFleet(spec) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        before = fleet.state()
        report = tmp_path / "report.jsonl"
        writer = ReportWriter.create(report, overwrite=True)
        try:
            summary = await engine.run(
                inventory,
                engine.Options(retry=policy, active_clusters=3, grace=GRACE),
                [writer, events.append, interrupt_on_tenth_retry],
                control=control,
            )
        finally:
            writer.close()
        finished = time.monotonic()
        requests = list(fleet.request_log)
        lines = [orjson.loads(line) for line in report.read_bytes().splitlines()]
        check_report(lines)
        check_invariants(
            inventory=inventory,
            before=before,
            after=fleet.state(),
            writes=fleet.write_log,
            report=lines,
        )
    (at,) = interrupted
    # Requests already on the wire when Ctrl-C came may land a moment later; nothing after.
    late = [r for r in requests if r.at > at + 0.2]
    assert late == [], f"{len(late)} requests started after the interrupt: {late[:3]}"
    assert summary.exit_code == 130
    assert summary.stop_reason == "interrupted"
    # Nothing was in flight to wait for: a run that waited out the grace would take 30 s.
    assert finished - at < GRACE / 3, "the run waited out the grace period"
    assert set(outcomes(lines)) == {"cancelled"}
    stopped = [line for line in lines if line.get("outcome") in ("cancelled", "skipped")]
    assert {line["reason"] for line in stopped} == {"interrupted"}
