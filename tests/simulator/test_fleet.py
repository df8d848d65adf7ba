"""The fleet as a whole: generated state, seeds, knobs, inventory, logs."""

from __future__ import annotations

import dataclasses
import ssl
import stat
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from bulkkm.simulator import Faults, FleetSpec, Mode, Scope, SimulatedFleet

from ._support import SPEC, Client, StartFleet

KMS = "/api/security/key-managers"


def test_same_seed_builds_the_same_fleet_and_another_seed_does_not() -> None:
    """The generated state is a function of the seed (and the cluster's index)."""
    spec = FleetSpec(clusters=5, svms=6, seed=7)
    assert SimulatedFleet(spec).state() == SimulatedFleet(spec).state()
    assert SimulatedFleet(spec).state() != SimulatedFleet(dataclasses.replace(spec, seed=8)).state()


def test_a_cluster_does_not_depend_on_the_fleet_size() -> None:
    """sim-0002 is the same cluster in a fleet of 3 and in a fleet of 30."""
    small = SimulatedFleet(FleetSpec(clusters=3, seed=4)).cluster("sim-0002").state()
    large = SimulatedFleet(FleetSpec(clusters=30, seed=4)).cluster("sim-0002").state()
    assert small == large


def test_generated_fleet_mixes_versions_and_key_manager_kinds() -> None:
    """Names, mixed versions, one cluster-scope manager each, external/onboard/none SVMs."""
    fleet = SimulatedFleet(FleetSpec(clusters=60, svms=10, seed=3))
    names = [c.name for c in fleet.clusters]
    assert names[:2] == ["sim-0000", "sim-0001"]
    assert [s.name for s in fleet.clusters[0].svms][:2] == ["svm000", "svm001"]
    versions = {c.version for c in fleet.clusters}
    assert len(versions) >= 8
    assert all(v.startswith("9.") for v in versions)
    modes = {km.mode for c in fleet.clusters for km in c.key_managers.values()}
    assert modes == {Mode.EXTERNAL, Mode.ONBOARD}
    for cluster in fleet.clusters:
        scopes = [km.scope for km in cluster.key_managers.values()]
        assert scopes.count(Scope.CLUSTER) == 1
    svm_without = [
        svm for c in fleet.clusters for svm in c.svms if c.key_manager_of(svm.name) is None
    ]
    assert svm_without
    counts = {
        len(km.servers)
        for c in fleet.clusters
        for km in c.key_managers.values()
        if km.mode is Mode.EXTERNAL
    }
    assert counts == {0, 1, 2, 3, 4}
    assert any(
        secondaries
        for c in fleet.clusters
        for km in c.key_managers.values()
        for secondaries in km.servers.values()
    )


def test_initial_servers_and_external_ratio_shape_every_key_manager() -> None:
    """``external_ratio=1`` and ``initial_servers=0``: every SVM external, every one empty."""
    fleet = SimulatedFleet(
        FleetSpec(clusters=4, svms=5, external_ratio=1.0, onboard_ratio=0.0, initial_servers=0)
    )
    for cluster in fleet.clusters:
        for svm in cluster.svms:
            km = cluster.key_manager_of(svm.name)
            assert km is not None
            assert km.mode is Mode.EXTERNAL
            assert km.servers == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"clusters": -1},
        {"svms": -2},
        {"external_ratio": 1.5},
        {"external_ratio": 0.8, "onboard_ratio": 0.5},
        {"initial_servers": 5},
        {"job_delay": -1.0},
        {"cluster_faults": {"sim-9999": Faults()}},
    ],
)
def test_impossible_specs_are_refused(bad: dict[str, object]) -> None:
    """A spec no fleet could have raises ValueError."""
    with pytest.raises(ValueError):
        FleetSpec(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad",
    [
        {"latency": -0.1},
        {"jitter": float("inf")},
        {"transient_rate": 1.1},
        {"reset_rate": -0.5},
        {"max_in_flight": 0},
    ],
)
def test_impossible_faults_are_refused(bad: dict[str, object]) -> None:
    """Faults no cluster could have raise ValueError."""
    with pytest.raises(ValueError):
        Faults(**bad)  # type: ignore[arg-type]


async def test_cluster_faults_override_the_default(start_fleet: StartFleet) -> None:
    """``cluster_faults`` names the clusters whose faults differ from ``faults``."""
    spec = dataclasses.replace(
        SPEC, faults=Faults(latency=0.001), cluster_faults={"sim-0001": Faults(dead=True)}
    )
    fleet = await start_fleet(spec)
    assert fleet.cluster("sim-0000").faults == Faults(latency=0.001)
    assert fleet.cluster("sim-0001").faults.dead


async def test_ca_file_exists_while_serving_and_is_removed_after(start_fleet: StartFleet) -> None:
    """The CA lives in a directory the fleet owns, removed when it closes."""
    fleet = await start_fleet()
    ca_file = fleet.ca_file
    assert ca_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    await fleet.close()
    assert not ca_file.exists()


async def test_every_cluster_has_its_own_loopback_port(fleet: SimulatedFleet) -> None:
    """Each cluster listens on its own 127.0.0.1 port."""
    addresses = [c.address for c in fleet.clusters]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith("127.0.0.1:") for a in addresses)


async def test_ipv6_loopback_fleet_serves_with_a_verified_certificate(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """``host="::1"`` serves on ``[::1]:port`` and the certificate verifies for ::1."""
    try:
        fleet = await start_fleet(dataclasses.replace(SPEC, host="::1"))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    client = Client(session, fleet, "sim-0000")
    assert client.cluster.address.startswith("[::1]:")
    assert (await client.get("/api/cluster")).status == 200


def _read_inventory(path: Path) -> tuple[Any, str, int]:
    """The inventory's YAML, its password file's first line and that file's mode."""
    document = yaml.safe_load(path.read_text())
    reference = document["defaults"]["password"]
    assert reference.startswith("file:")
    password_file = Path(reference.removeprefix("file:"))
    password = password_file.read_text().splitlines()[0]
    return document, password, stat.S_IMODE(password_file.stat().st_mode)


async def test_write_inventory_names_every_cluster_with_ca_and_file_password(
    fleet: SimulatedFleet, tmp_path: Path
) -> None:
    """The inventory parses, names every cluster, its CA verifies them, the password is a file."""
    path = fleet.write_inventory(
        tmp_path / "fleet.yaml",
        key_servers=(
            "kms1.example.com",
            {"server": "kms2.example.com", "secondary_key_servers": ["dr"]},
        ),
        concurrency=2,
        extra_defaults={"limits": {"timeout": 5}},
    )
    document, password, mode = _read_inventory(path)
    assert document["version"] == 1
    assert [c["name"] for c in document["clusters"]] == [c.name for c in fleet.clusters]
    assert [c["address"] for c in document["clusters"]] == [c.address for c in fleet.clusters]
    assert all(c["svms"] == "all" and c["cluster_scope"] is True for c in document["clusters"])
    defaults = document["defaults"]
    assert defaults["limits"] == {"concurrency": 2, "timeout": 5}
    assert defaults["key_servers"][0] == "kms1.example.com"
    assert defaults["tls"]["verify"] is True
    ca_file = Path(defaults["tls"]["ca_file"])
    assert ca_file.parent == tmp_path
    ssl.create_default_context(cafile=str(ca_file))
    assert password == fleet.cluster("sim-0000").password
    assert mode == 0o600
    assert defaults["username"] == fleet.cluster("sim-0000").username


async def test_state_is_json_and_shows_servers_with_secondaries(fleet: SimulatedFleet) -> None:
    """``state()`` serialises, and shows each key manager's servers and secondaries."""
    km = fleet.cluster("sim-0000").key_manager_of("svm001")
    assert km is not None
    km.servers["kms-a.example.com:5696"] = ("dr1",)
    state = orjson.loads(orjson.dumps(fleet.state()))
    (cluster,) = [c for c in state["clusters"] if c["name"] == "sim-0000"]
    (record,) = [k for k in cluster["key_managers"] if k["svm"] == "svm001"]
    assert record["servers"] == [
        {"server": "kms-a.example.com:5696", "secondary_key_servers": ["dr1"]}
    ]
    assert "password" not in orjson.dumps(state).decode()


async def test_request_log_and_counters_follow_the_traffic(
    fleet: SimulatedFleet, session: aiohttp.ClientSession
) -> None:
    """Requests are logged in order per cluster, counted by templated path, peak tracked."""
    first, second = Client(session, fleet, "sim-0000"), Client(session, fleet, "sim-0001")
    km = first.cluster.key_manager_of("svm000")
    assert km is not None
    await first.get(f"{KMS}/{km.uuid}/key-servers")
    await second.get("/api/cluster")
    await first.get(f"{KMS}/{km.uuid}/key-servers/kms.example.com%3A5696")
    assert [(r.cluster, r.method) for r in fleet.request_log] == [
        ("sim-0000", "GET"),
        ("sim-0001", "GET"),
        ("sim-0000", "GET"),
    ]
    assert fleet.requests("sim-0000") == {
        ("GET", f"{KMS}/{{uuid}}/key-servers"): 1,
        ("GET", f"{KMS}/{{uuid}}/key-servers/{{server}}"): 1,
    }
    assert fleet.peak_in_flight("sim-0000") == 1
    assert fleet.requests("sim-0001") == {("GET", "/api/cluster"): 1}
