"""migrate as an operator runs it: the real command against a simulated fleet that misbehaves.

Each test is a bug found that way; it asserts what the operator checks: the summary, the
report's lines and what the clusters hold afterwards.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bulkkm.simulator import FleetSpec, SimulatedFleet
from tests.cli import bulkkm, read_report, running
from tests.invariants import check_migration, check_report, key_managers, servers_of

NEW = ("kms-new-1.example.com", "kms-new-2.example.com")
NEW_NORMALIZED = {f"{s}:5696" for s in NEW}
OLD = ("kms-old-1.example.com", "kms-old-2.example.com")
OLD_NORMALIZED = {f"{s}:5696" for s in OLD}


def _fleet(**kwargs: Any) -> FleetSpec:
    """3 clean clusters of 2 SVMs with 2 old servers each; seed 7 runs 9.14.1, 9.13.1, 9.12.1."""
    kwargs = {
        "clusters": 3,
        "svms": 2,
        "seed": 7,
        "headroom": 2,
        "initial_servers": 2,
        "cluster_external_ratio": 1.0,
        **kwargs,
    }
    return FleetSpec(**kwargs)


def _inventory(fleet: SimulatedFleet, tmp_path: Path) -> Path:
    """The fleet's inventory: the two new servers wanted, the two old ones retired."""
    return fleet.write_inventory(
        tmp_path / "fleet.yaml",
        key_servers=NEW,
        extra_defaults={"retire_servers": list(OLD), "limits": {"timeout": 5}},
    )


async def test_a_cluster_too_old_to_verify_keeps_its_servers_without_a_failed_verification(
    tmp_path: Path,
) -> None:
    """--verify-keys on a 9.12 cluster, and any migrate on a 9.6 one: the old servers are kept
    (blocked, ontap_too_old) and the summary counts no failed verification there.

    Before, each of their key managers got a verification the cluster cannot answer, reported
    failed ("keys_not_restored", "verify_failed" with no server read), beside the true reason.
    """
    async with asyncio.timeout(90), SimulatedFleet(_fleet()) as fleet:
        assert [c.version for c in fleet.clusters] == ["9.14.1", "9.13.1", "9.12.1"]
        inventory = _inventory(fleet, tmp_path)
        before = fleet.state()
        writes, checks = len(fleet.write_log), len(fleet.verify_log)
        report = tmp_path / "keys.jsonl"
        code, out, err = await bulkkm(
            "migrate", str(inventory), "--report", str(report),
            "--verify-timeout", "10", "--verify-keys",
        )  # fmt: skip
        lines = read_report(report)
        check_report(lines)
        check_migration(
            before=before,
            writes=fleet.write_log[writes:],
            checks=fleet.verify_log[checks:],
            report=lines,
        )
        after = fleet.state()

        # The 9.6 cluster: a fleet of its own, every cluster 9.6.
        old = _fleet(clusters=1, seed=8)
        async with SimulatedFleet(old) as fleet96:
            fleet96.clusters[0].version = "9.6.0"
            (tmp_path / "96").mkdir()
            inventory96 = _inventory(fleet96, tmp_path / "96")
            _, steps, _ = await bulkkm("plan", str(inventory96), "--show-steps", "-q")
            report96 = tmp_path / "96.jsonl"
            code96, out96, _ = await bulkkm(
                "migrate", str(inventory96), "--report", str(report96), "--verify-timeout", "5"
            )
            lines96 = read_report(report96)
            after96 = fleet96.state()

    assert code == 1, err
    for (cluster, svm), km in key_managers(after).items():
        if cluster == "sim-0002":
            assert servers_of(km) == NEW_NORMALIZED | OLD_NORMALIZED, (cluster, svm)
        else:
            assert servers_of(km) == NEW_NORMALIZED, (cluster, svm)
    removals = [t for t in lines if t["type"] == "target" and t["cluster"] == "sim-0002"]
    assert {(t["action"], t["outcome"], t["reason"]) for t in removals} == {
        ("add", "added", None),
        ("remove", "blocked", "ontap_too_old"),
    }
    failed = [v for v in lines if v["type"] == "verify" and v["outcome"] != "passed"]
    assert failed == [], failed
    assert "keys_not_restored" not in out
    assert "key managers verified: passed 6\n" in out

    assert code96 == 1
    assert "verify" not in steps, steps
    assert "would_add" in steps
    assert not [v for v in lines96 if v["type"] == "verify"]
    assert "key managers verified" not in out96
    assert "verify_failed" not in out96
    for where, km in key_managers(after96).items():
        assert servers_of(km) == NEW_NORMALIZED | OLD_NORMALIZED, where


async def test_a_clean_fleet_of_three_old_servers_interleaves_two_new_in(tmp_path: Path) -> None:
    """simulate --clean --initial-servers 3 with two new servers and two of the old retired:
    served (migrate interleaves; it was refused as "no room"), apply is said to block there,
    and migrate ends exit 0 with the new servers and the old one kept, check 0 after."""
    inventory = tmp_path / "f.yaml"
    ready = tmp_path / "ready.json"
    args = ["--clean", "--clusters", "2", "--svms", "1", "--initial-servers", "3"]
    for server in NEW:
        args += ["--key-server", server]
    for server in OLD:
        args += ["--retire-server", server]
    # 4 old servers, 2 new, only 1 retired: 5 primaries at one moment, still refused.
    refused = await bulkkm(
        "simulate", "--clean", "--initial-servers", "4", "--key-server", NEW[0],
        "--key-server", NEW[1], "--retire-server", OLD[0], "--inventory-out", str(inventory),
    )  # fmt: skip
    assert refused.code == 2
    assert "no room for 2 new servers" in refused.err
    args += ["--inventory-out", str(inventory), "--ready-file", str(ready)]
    async with asyncio.timeout(60), running("simulate", *args) as simulator:
        assert simulator.stdout is not None
        banner = ""
        while "serving" not in banner:
            line = await simulator.stdout.readline()
            assert line, f"the simulator ended: {banner}"
            banner += line.decode()
        assert "nothing seeded that blocks a target" in banner
        assert "4 key managers fit the new servers only as retired ones go" in banner
        assert "apply, which never removes, blocks them too_many_servers" in banner
        while not ready.exists():  # noqa: ASYNC110 -- the simulator writes it when serving
            await asyncio.sleep(0.05)
        assert json.loads(ready.read_text())["blocked"] == {}
        plan = await bulkkm("plan", str(inventory), "-q", "--report", str(tmp_path / "p.jsonl"))
        assert plan.code == 0, plan.err
        done = await bulkkm("migrate", str(inventory), "--report", str(tmp_path / "m.jsonl"))
        assert done.code == 0, done.err
        assert "added 8, removed 8" in done.out
        check = await bulkkm("check", str(inventory), "--report", str(tmp_path / "c.jsonl"))
        assert check.code == 0, check.out
    present = {
        (t["cluster"], t["svm"], t["server"])
        for t in read_report(tmp_path / "c.jsonl")
        if t["type"] == "target" and t["outcome"] == "present"
    }
    assert {server for _, _, server in present} == NEW_NORMALIZED
