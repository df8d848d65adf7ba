"""NetApp's own Python client (``netapp_ontap``) against the simulator, TLS verified.

The client is synchronous, so each scenario runs in a thread while the fleet serves on the
event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from netapp_ontap.error import NetAppRestError
from netapp_ontap.host_connection import HostConnection
from netapp_ontap.resources.key_manager_keys import KeyManagerKeys
from netapp_ontap.resources.key_server import KeyServer
from netapp_ontap.resources.security_key_manager import SecurityKeyManager

from bulkkm.simulator import SimCluster, SimulatedFleet

from ._support import SPEC, StartFleet, key_manager

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_ca_bundle_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the connection's ``verify=`` CA count: requests prefers these variables to it."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)


async def _in_thread(fleet: SimulatedFleet, name: str, scenario: Callable[[], T]) -> T:
    """Run ``scenario`` in a thread with a verified connection to cluster ``name``."""
    cluster = fleet.cluster(name)
    host, _, port = cluster.address.rpartition(":")

    def run() -> T:
        """Open the connection in this thread (netapp_ontap keeps it thread-local)."""
        with HostConnection(
            host,
            port=int(port),
            username=cluster.username,
            password=cluster.password,
            # requests takes a CA path here, though netapp_ontap annotates a bool.
            verify=str(fleet.ca_file),  # type: ignore[arg-type]
            poll_interval=1,
            poll_timeout=5,
        ):
            return scenario()

    async with asyncio.timeout(20):
        return await asyncio.to_thread(run)


async def test_get_collection_pages_through_more_records_than_max_records(
    start_fleet: StartFleet,
) -> None:
    """``get_collection`` with a filter, encoded fields and small pages sees every record."""
    fleet = await start_fleet(dataclasses.replace(SPEC, svms=7))
    cluster = fleet.cluster("sim-0000")

    def scenario() -> list[tuple[str, str]]:
        """Every SVM-scope key manager, two per page."""
        found = SecurityKeyManager.get_collection(
            scope="svm", fields="svm.name,external.servers", max_records=2
        )
        return [(km.uuid, km.svm.name) for km in found]

    found = await _in_thread(fleet, "sim-0000", scenario)
    expected = [(km.uuid, km.svm.name) for km in cluster.key_managers.values() if km.svm]
    assert found == expected
    assert len(found) == 7
    assert fleet.requests("sim-0000")["GET", "/api/security/key-managers"] == 4


async def test_get_collection_filters_by_svm_name(fleet: SimulatedFleet) -> None:
    """``svm.name=`` selects that SVM's key manager, with its servers."""
    km = key_manager(fleet.cluster("sim-0000"), "svm002")
    km.servers["kms-a.example.com:5696"] = ()

    def scenario() -> list[list[str]]:
        """The servers of svm002's key manager."""
        query: dict[str, Any] = {"svm.name": "svm002", "fields": "external.servers"}
        found = SecurityKeyManager.get_collection(**query)
        return [[s.server for s in km.external.servers] for km in found]

    assert await _in_thread(fleet, "sim-0000", scenario) == [["kms-a.example.com:5696"]]


async def test_key_server_post_takes_its_name_from_location(fleet: SimulatedFleet) -> None:
    """``KeyServer.post()`` ends up with the normalised name ONTAP put in ``Location``."""
    km = key_manager(fleet.cluster("sim-0000"))

    def scenario() -> str:
        """Post a server spelled loosely; return the name the client now holds."""
        server = KeyServer(km.uuid, server="KMS-New.Example.COM")
        server.post()
        return str(server.server)

    assert await _in_thread(fleet, "sim-0000", scenario) == "kms-new.example.com:5696"
    assert "kms-new.example.com:5696" in km.servers


async def test_post_collection_returns_the_records_added(fleet: SimulatedFleet) -> None:
    """``post_collection(..., return_records=True)`` adds several servers in one call."""
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.13.1"
    km = key_manager(cluster)

    def scenario() -> list[str]:
        """Add two servers at once."""
        records = [KeyServer(server="kms-a.example.com"), KeyServer(server="10.0.0.9")]
        added = KeyServer.post_collection(records, km.uuid, return_records=True)
        assert isinstance(added, list)
        return [str(r.server) for r in added]

    added = await _in_thread(fleet, "sim-0000", scenario)
    assert added == ["kms-a.example.com:5696", "10.0.0.9:5696"]
    assert list(km.servers) == added


@pytest.mark.parametrize("name", ["kms-a.example.com:5696", "[fd20::1]:5696"])
async def test_get_patch_delete_by_host_port(fleet: SimulatedFleet, name: str) -> None:
    """get, patch and delete address a server by ``host:port`` or ``[v6]:port``."""
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.15.1"
    km = key_manager(cluster)
    km.servers[name] = ("old-dr.example.com",)

    def scenario() -> list[str]:
        """Read the secondaries, replace them, read them again, delete the server."""
        server = KeyServer(km.uuid, server=name)
        server.get(fields="*")
        before = list(server.to_dict()["secondary_key_servers"])
        # netapp_ontap's fields are dynamic attributes its stubs do not declare.
        server.secondary_key_servers = ["new-dr.example.com"]  # type: ignore[attr-defined]
        server.patch()
        server.get(fields="*")
        after = list(server.to_dict()["secondary_key_servers"])
        server.delete()
        return [*before, *after]

    seen = await _in_thread(fleet, "sim-0000", scenario)
    assert seen == ["old-dr.example.com", "new-dr.example.com"]
    assert name not in km.servers
    methods = [w.method for w in fleet.write_log]
    assert methods == ["PATCH", "DELETE"]


async def test_job_mode_post_polls_the_job_to_success(start_fleet: StartFleet) -> None:
    """Against 202 answers the client polls the job; the server is there afterwards."""
    fleet = await start_fleet(dataclasses.replace(SPEC, job_mode=True, job_delay=0.0))
    km = key_manager(fleet.cluster("sim-0000"))

    def scenario() -> str:
        """Post and let the client wait for the job."""
        server = KeyServer(km.uuid, server="kms-a.example.com")
        response = server.post()
        assert response.http_response.json()["state"] == "success"
        return str(server.server)

    assert await _in_thread(fleet, "sim-0000", scenario) == "kms-a.example.com:5696"
    assert "kms-a.example.com:5696" in km.servers
    assert fleet.requests("sim-0000")["GET", "/api/cluster/jobs/{uuid}"] >= 1


@pytest.mark.parametrize(
    ("prepare", "code"),
    [
        (lambda c: key_manager(c).servers.update({f"k{i}:5696": () for i in range(4)}), "65536038"),
        (lambda c: key_manager(c).servers.update({"kms-a.example.com:5696": ()}), "65536870"),
    ],
    ids=["fifth-primary", "already-configured"],
)
async def test_refusals_reach_the_client_as_netapp_rest_error(
    fleet: SimulatedFleet, prepare: Callable[[SimCluster], object], code: str
) -> None:
    """``NetAppRestError`` carries ONTAP's code from the error body."""
    cluster = fleet.cluster("sim-0000")
    prepare(cluster)
    km = key_manager(cluster)

    def scenario() -> NetAppRestError:
        """Post and return the client's error."""
        with pytest.raises(NetAppRestError) as caught:
            KeyServer(km.uuid, server="kms-a.example.com").post()
        return caught.value

    error = await _in_thread(fleet, "sim-0000", scenario)
    assert error.status_code == 400
    assert error.response_body is not None
    assert error.response_body["error"]["code"] == code


# Migrations: removing servers, their connectivity, the keys per node, restore.

OLD_1 = "kms-old-1.example.com:5696"
OLD_2 = "kms-old-2.example.com:5696"
NEW = "kms-new.example.com:5696"
MIGRATION = dataclasses.replace(SPEC, initial_servers=2, job_delay=0.0)


@pytest.mark.parametrize(
    ("unreplicated", "server", "status", "code"),
    [
        ((OLD_2,), OLD_2, 400, "65536700"),
        ((), NEW, 404, "65536843"),
    ],
    ids=["only-holder-of-keys", "not-configured"],
)
async def test_key_server_delete_refusals_reach_the_client(
    start_fleet: StartFleet,
    unreplicated: tuple[str, ...],
    server: str,
    status: int,
    code: str,
) -> None:
    """``KeyServer.delete()`` raises with ONTAP's status and code; nothing is removed."""
    fleet = await start_fleet(dataclasses.replace(MIGRATION, unreplicated_servers=unreplicated))
    km = key_manager(fleet.cluster("sim-0000"))

    def scenario() -> NetAppRestError:
        """Delete and return the client's error."""
        with pytest.raises(NetAppRestError) as caught:
            KeyServer(km.uuid, server=server).delete()
        return caught.value

    error = await _in_thread(fleet, "sim-0000", scenario)
    assert error.status_code == status
    assert error.response_body is not None
    assert error.response_body["error"]["code"] == code
    assert list(km.servers) == [OLD_1, OLD_2]


@pytest.mark.parametrize("version", ["9.13.1", "9.16.1"])
async def test_key_server_get_connectivity_gives_node_states_from_9_13(
    start_fleet: StartFleet, version: str
) -> None:
    """``get(fields="connectivity")`` fills ``connectivity.node_states`` for every node."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_1}@sim-0000-02",))
    fleet = await start_fleet(spec)
    cluster = fleet.cluster("sim-0000")
    cluster.version = version
    km = key_manager(cluster)

    def scenario() -> tuple[bool, list[tuple[str, str, str]], bool]:
        """Read the server with its connectivity, then without."""
        server = KeyServer(km.uuid, server=OLD_1)
        server.get(fields="connectivity")
        connectivity = server.connectivity
        states = [(s.node.name, s.node.uuid, s.state) for s in connectivity.node_states]
        plain = KeyServer(km.uuid, server=OLD_1)
        plain.get()
        return connectivity.cluster_availability, states, "connectivity" in plain.to_dict()

    available, states, plain_has_it = await _in_thread(fleet, "sim-0000", scenario)
    first, second = cluster.nodes
    assert available is False
    assert states == [
        (first.name, first.uuid, "available"),
        (second.name, second.uuid, "not_responding"),
    ]
    assert plain_has_it is False


async def test_key_server_get_connectivity_gives_cluster_availability_before_9_13(
    start_fleet: StartFleet,
) -> None:
    """9.7-9.12: the client gets ``cluster_availability``; today's client has no ``records``."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_2}@sim-0000-01",))
    fleet = await start_fleet(spec)
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.10.1"
    km = key_manager(cluster)

    def scenario() -> list[dict[str, Any]]:
        """Each server's connectivity, as the client holds it."""
        found = []
        for name in (OLD_1, OLD_2):
            server = KeyServer(km.uuid, server=name)
            server.get(fields="connectivity")
            found.append(server.to_dict()["connectivity"])
        return found

    assert await _in_thread(fleet, "sim-0000", scenario) == [
        {"cluster_availability": True},
        {"cluster_availability": False},
    ]


async def test_key_manager_keys_collection_and_instance_per_node(start_fleet: StartFleet) -> None:
    """``KeyManagerKeys`` lists a node's keys with ``restored`` and reads one by key_id."""
    fleet = await start_fleet(MIGRATION)
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.11.1"
    km = key_manager(cluster)
    node = cluster.nodes[1]
    km.keys[0].unrestored.add(node.uuid)

    def scenario() -> tuple[list[tuple[str, str, bool]], str]:
        """The node's keys, then the first one alone."""
        found = KeyManagerKeys.get_collection(
            km.uuid, node.uuid, fields="key_server,key_type,restored"
        )
        listed = [(str(k.key_id), str(k.key_server), bool(k.restored)) for k in found]
        one = KeyManagerKeys(km.uuid, node.uuid, key_id=km.keys[0].key_id)
        one.get()
        return listed, str(one.key_type)

    listed, key_type = await _in_thread(fleet, "sim-0000", scenario)
    assert listed == [(key.key_id, OLD_1, key is not km.keys[0]) for key in km.keys]
    assert key_type == "vek"


async def test_restore_polls_its_job_and_lets_the_old_server_go(start_fleet: StartFleet) -> None:
    """``SecurityKeyManager.restore`` waits for the job; then the old server can be deleted."""
    spec = dataclasses.replace(MIGRATION, new_server_copies=False)
    fleet = await start_fleet(spec)
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.14.1"
    km = key_manager(cluster)

    def scenario() -> tuple[str, str]:
        """Add the new server, retire one old one, restore from the new one, retire the last."""
        KeyServer(km.uuid, server=NEW).post()
        KeyServer(km.uuid, server=OLD_1).delete()
        with pytest.raises(NetAppRestError) as refused:
            KeyServer(km.uuid, server=OLD_2).delete()
        assert refused.value.response_body is not None
        code = str(refused.value.response_body["error"]["code"])
        response = SecurityKeyManager(uuid=km.uuid).restore(body={"key_server": NEW})
        KeyServer(km.uuid, server=OLD_2).delete()
        return code, str(response.http_response.json()["state"])

    assert await _in_thread(fleet, "sim-0000", scenario) == ("65536700", "success")
    assert list(km.servers) == [NEW]
    assert fleet.requests("sim-0000")["GET", "/api/cluster/jobs/{uuid}"] >= 1


async def test_a_failed_restore_job_raises_in_the_client(start_fleet: StartFleet) -> None:
    """A restore from a server a node cannot reach ends in a failed job: NetAppRestError."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_1}@sim-0000-01",))
    fleet = await start_fleet(spec)
    cluster = fleet.cluster("sim-0000")
    cluster.version = "9.13.1"
    km = key_manager(cluster)

    def scenario() -> str:
        """Restore and return the client's error."""
        with pytest.raises(NetAppRestError) as caught:
            SecurityKeyManager(uuid=km.uuid).restore(body={"key_server": OLD_1})
        return str(caught.value)

    assert "sim-0000-01" in await _in_thread(fleet, "sim-0000", scenario)
