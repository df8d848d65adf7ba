"""apply against a simulated fleet: faults ridden out, nothing written twice, one line each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bulkkm import engine
from bulkkm.events import ClusterDiscovered, Event, Outcome, Retrying
from bulkkm.report import load_resume
from bulkkm.simulator import Faults, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout
from tests.invariants import key_managers, outcomes, servers_of

NORMALIZED = ("kms-new.example.com:5696", "kms-dr.example.com:5697")


async def test_faulty_fleet_ends_complete_with_nothing_written_twice(tmp_path: Path) -> None:
    """200 x 10 with transient errors, 500s, resets and ambiguous POSTs: all added or present."""
    faults = Faults(transient_rate=0.05, error500_rate=0.02, reset_rate=0.02, ambiguous_rate=0.02)
    spec = fleet_spec(
        clusters=200, svms=10, seed=11, faults=faults, initial_servers=1, cluster_external_ratio=1.0
    )
    async with asyncio.timeout(120), SimulatedFleet(spec) as fleet:
        inventory = inventory_for(fleet, tmp_path, concurrency=3)
        result = await run_rollout(fleet, inventory, tmp_path)
        assert set(outcomes(result.lines)) <= {"added", "present"}
        assert outcomes(result.lines)["added"] > 1000
        assert result.summary.exit_code == 0
        for (cluster, svm), km in key_managers(result.after).items():
            if km["mode"] == "external":
                assert set(NORMALIZED) <= servers_of(km), (cluster, svm)
        assert max(fleet.peak_in_flight(c.name) for c in fleet.clusters) <= 3
        assert any(isinstance(e, Retrying) for e in result.events)


async def test_run_line_gets_the_final_target_count(tmp_path: Path) -> None:
    """The run line's `targets` equals the number of target lines."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=3, seed=1)) as fleet:
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
    assert result.lines[0]["targets"] == len(result.targets())
    assert result.lines[-1]["type"] == "summary"


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        ("66060338", "failed"),
        ("66060339", "failed"),
        ("65536821", "failed"),
    ],
)
async def test_permanent_kmip_errors_fail_after_one_attempt(
    tmp_path: Path, code: str, outcome: str
) -> None:
    """A permanent ONTAP error ends the target after one POST, with its code."""
    spec = fleet_spec(
        clusters=1, svms=2, seed=3, initial_servers=0, external_ratio=1.0, onboard_ratio=0.0
    )
    async with SimulatedFleet(spec) as fleet:
        sim = fleet.cluster(fleet.clusters[0].name)
        if code == "65536821":
            for km in sim.key_managers.values():
                km.client_certificate_missing = True
        else:
            sim.kmip_errors["kms-new.example.com:5696"] = code
        inventory = inventory_for(fleet, tmp_path, key_servers=("kms-new.example.com",))
        result = await run_rollout(fleet, inventory, tmp_path)
    lines = [t for t in result.targets() if t["server"] == "kms-new.example.com:5696"]
    assert lines
    for line in lines:
        assert line["outcome"] == outcome
        assert line["attempts"] == 1
        assert line["error"]["code"] == code
    assert result.summary.exit_code == 1


@pytest.mark.parametrize("flag", ["metrocluster", "multitenant_unsupported"])
async def test_cluster_refusing_svm_key_managers_fails_them_once(tmp_path: Path, flag: str) -> None:
    """MetroCluster (65536824), no multitenancy (65536822): SVM targets fail, the cluster's not."""
    spec = fleet_spec(
        clusters=1,
        svms=2,
        seed=3,
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
        cluster_external_ratio=1.0,
    )
    async with SimulatedFleet(spec) as fleet:
        setattr(fleet.cluster(fleet.clusters[0].name), flag, True)
        inventory = inventory_for(fleet, tmp_path, key_servers=("kms-new.example.com",))
        result = await run_rollout(fleet, inventory, tmp_path)
    svm_lines = [t for t in result.targets() if t["svm"] is not None]
    assert {t["outcome"] for t in svm_lines} == {"failed"}
    assert {t["attempts"] for t in svm_lines} == {1}
    assert {t["error"]["code"] for t in svm_lines} == {
        "65536824" if flag == "metrocluster" else "65536822"
    }
    assert [t["outcome"] for t in result.targets() if t["svm"] is None] == ["added"]


async def test_transient_errors_are_retried_until_they_pass(tmp_path: Path) -> None:
    """With half the POSTs failing transiently every target still ends added, after retries."""
    spec = fleet_spec(
        clusters=2, svms=5, seed=5, faults=Faults(transient_rate=0.5), initial_servers=0
    )
    async with SimulatedFleet(spec) as fleet:
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
    assert set(outcomes(result.lines)) == {"added"}
    assert max(int(t["attempts"]) for t in result.targets()) > 1


async def test_retries_stop_at_the_attempt_bound(tmp_path: Path) -> None:
    """A KMIP server that always fails transiently ends `failed` after the policy's attempts."""
    spec = fleet_spec(
        clusters=1,
        svms=1,
        seed=5,
        faults=Faults(transient_rate=1.0),
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
    )
    async with SimulatedFleet(spec) as fleet:
        inventory = inventory_for(fleet, tmp_path, key_servers=("kms-new.example.com",))
        policy = engine.RetryPolicy(
            attempts=3, timeout=5.0, wait_initial=0.01, wait_max=0.02, wait_jitter=0.0
        )
        result = await run_rollout(fleet, inventory, tmp_path, retry=policy)
    for line in result.targets():
        assert line["outcome"] == "failed"
        assert line["attempts"] == 3
        assert line["error"]["category"] == "transient"


async def test_dead_cluster_and_bad_credentials_end_with_their_reasons(tmp_path: Path) -> None:
    """A dead cluster and one refusing our password get a `cluster` line; the rest complete."""
    spec = fleet_spec(
        clusters=6,
        svms=3,
        seed=9,
        cluster_faults={"sim-0001": Faults(dead=True)},
        initial_servers=0,
    )
    async with SimulatedFleet(spec) as fleet:
        fleet.cluster("sim-0002").password = "changed-by-someone"
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
    cluster_lines = {
        str(line["cluster"]): line for line in result.lines if line["type"] == "cluster"
    }
    assert set(cluster_lines) == {"sim-0001", "sim-0002"}
    assert cluster_lines["sim-0001"]["error"]["category"] in ("transport", "timeout")
    assert cluster_lines["sim-0002"]["error"]["category"] == "auth"
    assert {str(t["cluster"]) for t in result.targets()} == {
        "sim-0000",
        "sim-0003",
        "sim-0004",
        "sim-0005",
    }
    assert set(outcomes(result.lines)) <= {"added", "present"}
    assert result.summary.exit_code == 1
    assert result.lines[-1]["clusters_failed"] == 2


@pytest.mark.parametrize(
    ("command", "dry_run"), [("plan", False), ("check", False), ("apply", True)]
)
async def test_read_only_runs_send_no_write(tmp_path: Path, command: str, dry_run: bool) -> None:
    """plan, check and --dry-run leave the write log empty and report would_add."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=4, seed=2, initial_servers=0)) as fleet:
        result = await run_rollout(
            fleet,
            inventory_for(fleet, tmp_path),
            tmp_path,
            command=engine.Command(command),
            dry_run=dry_run,
        )
        assert fleet.write_log == []
        assert {m for c in fleet.clusters for (m, _) in fleet.requests(c.name)} == {"GET"}
    assert outcomes(result.lines)["would_add"] > 0
    assert result.summary.exit_code == (4 if command == "check" else 0)


async def test_check_exits_0_once_the_fleet_is_compliant(tmp_path: Path) -> None:
    """After apply, check finds nothing missing: every target present, exit 0."""
    async with SimulatedFleet(fleet_spec(clusters=2, svms=3, seed=4, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        await run_rollout(fleet, inventory, tmp_path, name="apply.jsonl")
        result = await run_rollout(
            fleet, inventory, tmp_path, name="check.jsonl", command=engine.Command.CHECK
        )
    assert set(outcomes(result.lines)) == {"present"}
    assert result.summary.exit_code == 0


async def test_max_failures_stops_starting_new_work(tmp_path: Path) -> None:
    """Past --max-failures the rest is skipped with its reason, and the exit code is 3."""
    spec = fleet_spec(
        clusters=20, svms=2, seed=8, faults=Faults(transient_rate=1.0), initial_servers=0
    )
    async with SimulatedFleet(spec) as fleet:
        result = await run_rollout(
            fleet,
            inventory_for(fleet, tmp_path),
            tmp_path,
            max_failures=2,
            active_clusters=2,
            retry=engine.RetryPolicy(attempts=1),
        )
    assert result.summary.exit_code == 3
    skipped = [line for line in result.lines if line.get("outcome") == "skipped"]
    assert skipped
    assert {line["reason"] for line in skipped} == {"max_failures"}


async def test_job_mode_posts_are_polled_to_completion(tmp_path: Path) -> None:
    """A 202 with a job: the job is polled, and the target is added once the job succeeds."""
    async with SimulatedFleet(
        fleet_spec(clusters=2, svms=2, seed=6, job_mode=True, initial_servers=0)
    ) as fleet:
        result = await run_rollout(fleet, inventory_for(fleet, tmp_path), tmp_path)
        posts = [w for w in fleet.write_log if w.method == "POST"]
        for cluster in fleet.clusters:
            jobs = fleet.jobs(cluster.name)
            assert jobs, cluster.name
            assert {job["state"] for job in jobs.values()} == {"success"}, jobs
            polls = fleet.requests(cluster.name)["GET", "/api/cluster/jobs/{uuid}"]
            assert polls >= len(jobs), (cluster.name, polls, len(jobs))
    assert set(outcomes(result.lines)) == {"added"}
    assert posts
    assert {w.status for w in posts} == {202}  # every write went through a job


async def test_resume_skips_what_the_old_report_finished(tmp_path: Path) -> None:
    """A resumed run carries finished targets over and sends nothing for them."""
    async with SimulatedFleet(fleet_spec(clusters=3, svms=3, seed=7, initial_servers=0)) as fleet:
        inventory = inventory_for(fleet, tmp_path)
        first = await run_rollout(fleet, inventory, tmp_path, name="first.jsonl")
        resume = load_resume(tmp_path / "first.jsonl")
        posts_before = len(fleet.write_log)
        second = await run_rollout(
            fleet,
            inventory,
            tmp_path,
            name="second.jsonl",
            resume=resume,
        )
        assert len(fleet.write_log) == posts_before
    assert outcomes(second.lines) == outcomes(first.lines)
    assert all(t.get("carried_over") for t in second.targets())
    assert second.lines[0]["resumed_from"] == resume.run_id
    assert second.after == first.after  # the fleet as the first run left it


def test_outcome_values_match_the_contract() -> None:
    """The outcome names are the contract's."""
    assert {o.value for o in Outcome} == {
        "added",
        "present",
        "would_add",
        "blocked",
        "failed",
        "skipped",
        "cancelled",
        "removed",
        "absent",
        "would_remove",
    }


async def test_batch_refused_as_already_configured_is_read_back_and_the_rest_sent(
    tmp_path: Path,
) -> None:
    """A server added by someone else after discovery: it is `present`, the other `added`."""
    spec = fleet_spec(
        clusters=1, svms=1, seed=12, initial_servers=0, external_ratio=1.0, onboard_ratio=0.0
    )
    async with SimulatedFleet(spec) as fleet:
        sim = fleet.cluster("sim-0000")
        assert sim.at_least(8)  # records[] batches need 9.8
        inventory = inventory_for(fleet, tmp_path)

        def race(event: Event) -> None:
            if isinstance(event, ClusterDiscovered):
                for km in sim.key_managers.values():
                    km.servers[NORMALIZED[0]] = ()

        result = await run_rollout(fleet, inventory, tmp_path, extra=[race])
        posts = [w for w in fleet.write_log if w.method == "POST"]
    by_server = {(t["svm"], t["server"]): t["outcome"] for t in result.targets()}
    assert set(by_server.values()) == {"present", "added"}
    assert {o for (_, s), o in by_server.items() if s == NORMALIZED[0]} == {"present"}
    assert {o for (_, s), o in by_server.items() if s == NORMALIZED[1]} == {"added"}
    assert any(w.code == "65536870" for w in posts)
