"""What a migration sees of the simulator: nodes, connectivity, keys per node, restore, DELETE.

Over real sockets with TLS verified, as the migration engine will meet them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from bulkkm.simulator import (
    Faults,
    FleetSpec,
    SimCluster,
    SimKeyManager,
    SimulatedFleet,
    VerifyKind,
    VerifyRecord,
    WriteRecord,
)
from bulkkm.simulator._generate import build_cluster

from ._support import SPEC, Client, StartFleet, key_manager

KMS = "/api/security/key-managers"
OLD_1 = "kms-old-1.example.com:5696"
OLD_2 = "kms-old-2.example.com:5696"
NEW = "kms-new.example.com:5696"
MIGRATION = dataclasses.replace(SPEC, initial_servers=2)
"""Every key manager external, starting with kms-old-1 and kms-old-2 and their keys."""
DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def _client(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    spec: FleetSpec = MIGRATION,
    *,
    version: str = "9.15.1",
) -> Client:
    """A client to ``sim-0000`` of a fresh fleet, that cluster at ONTAP ``version``."""
    fleet = await start_fleet(spec)
    client = Client(session, fleet, "sim-0000")
    client.cluster.version = version
    return client


def _servers_path(km: SimKeyManager, server: str | None = None) -> str:
    """The key-servers collection of ``km``, or one server of it (percent-encoded)."""
    path = f"{KMS}/{km.uuid}/key-servers"
    return path if server is None else f"{path}/{urllib.parse.quote(server, safe='')}"


def _keys_path(km: SimKeyManager, node_uuid: str) -> str:
    """The keys of ``km`` on one node."""
    return f"{KMS}/{km.uuid}/keys/{node_uuid}/key-ids"


async def _wait_for_job(client: Client, answer: Any) -> dict[str, Any]:
    """Poll the job of a 202 answer until it ends; its last record."""
    assert answer.status == 202, answer.body
    href = answer.body["job"]["_links"]["self"]["href"]
    async with asyncio.timeout(5):
        while True:
            job = await client.get(f"{href}?fields=state,message,code,error")
            if job.body["state"] in ("success", "failure"):
                return dict(job.body)
            await asyncio.sleep(0.01)


async def _restore(client: Client, km: SimKeyManager, server: str) -> dict[str, Any]:
    """Restore ``km``'s keys from ``server``; the finished job."""
    answer = await client.post(f"{KMS}/{km.uuid}/restore", {"key_server": server})
    return await _wait_for_job(client, answer)


# Nodes and seeded state.


def test_every_cluster_has_named_nodes_with_seeded_uuids() -> None:
    """Nodes are CLUSTER-01.., their uuids the same under one seed and unique in a fleet."""
    spec = dataclasses.replace(MIGRATION, nodes=3)
    first, again, other = (build_cluster(spec, 0), build_cluster(spec, 0), build_cluster(spec, 1))
    assert [n.name for n in first.nodes] == ["sim-0000-01", "sim-0000-02", "sim-0000-03"]
    assert [n.uuid for n in first.nodes] == [n.uuid for n in again.nodes]
    assert {n.uuid for n in first.nodes}.isdisjoint(n.uuid for n in other.nodes)


def test_nodes_and_keys_leave_the_rest_of_the_seeded_state_as_it_was() -> None:
    """Nodes and keys come from streams of their own: the same seed, the same key managers."""
    base = FleetSpec(clusters=1, seed=7)
    varied = dataclasses.replace(base, nodes=5, unreplicated_servers=(OLD_1,))

    def shape(cluster: SimCluster) -> list[tuple[str, dict[str, tuple[str, ...]]]]:
        """Every key manager's uuid and servers."""
        return [(km.uuid, dict(km.servers)) for km in cluster.key_managers.values()]

    assert shape(build_cluster(base, 0)) == shape(build_cluster(varied, 0))


def test_keys_are_seeded_on_the_initial_servers_and_unreplicated_ones_on_theirs_only() -> None:
    """A few keys on every initial server; ``unreplicated_servers`` adds one on that one only."""
    spec = dataclasses.replace(MIGRATION, unreplicated_servers=("kms-old-2.example.com",))
    cluster = build_cluster(spec, 0)
    for km in cluster.key_managers.values():
        shared = [key for key in km.keys if key.replicated]
        assert 1 <= len(shared) <= 3
        assert all(key.holders == {OLD_1, OLD_2} for key in shared)
        (only,) = [key for key in km.keys if not key.replicated]
        assert only.holders == {OLD_2}
        assert km.sole_holder_of(OLD_2) == [only]
        assert km.sole_holder_of(OLD_1) == []


@pytest.mark.parametrize(
    ("entry", "down"),
    [
        (NEW, {"sim-0000-01", "sim-0000-02", "sim-0001-01", "sim-0001-02"}),
        (f"{NEW}@sim-0001", {"sim-0001-01", "sim-0001-02"}),
        ("KMS-New.Example.com@sim-0000-02", {"sim-0000-02"}),
    ],
    ids=["everywhere", "one-cluster", "one-node"],
)
async def test_unreachable_servers_reach_the_nodes_they_name(
    start_fleet: StartFleet, entry: str, down: set[str]
) -> None:
    """``NAME``, ``NAME@CLUSTER`` and ``NAME@NODE`` make that server unreachable there."""
    fleet = await start_fleet(dataclasses.replace(MIGRATION, unreachable_servers=(entry,)))
    unreachable = {n.name for c in fleet.clusters for n in c.nodes if NEW in n.unreachable}
    assert unreachable == down


def test_an_unreachable_server_on_no_such_node_is_refused() -> None:
    """A place that is neither a cluster nor a node of the fleet is a mistake, said at once."""
    with pytest.raises(ValueError, match="sim-0009-01"):
        SimulatedFleet(dataclasses.replace(MIGRATION, unreachable_servers=(f"{NEW}@sim-0009-01",)))


# Connectivity.


@pytest.mark.parametrize("version", ["9.15.1", "9.10.1"])
@pytest.mark.parametrize("fields", [None, "*", "server,secondary_key_servers"])
async def test_connectivity_is_not_returned_unless_named(
    start_fleet: StartFleet, session: aiohttp.ClientSession, version: str, fields: str | None
) -> None:
    """``connectivity`` is expensive: neither the default nor ``fields=*`` returns it."""
    client = await _client(start_fleet, session, version=version)
    km = key_manager(client.cluster)
    query = "" if fields is None else f"?fields={fields}"
    many = await client.get(_servers_path(km) + query)
    one = await client.get(_servers_path(km, OLD_1) + query)
    assert many.status == one.status == 200
    assert all("connectivity" not in r for r in many.body["records"])
    assert "connectivity" not in one.body
    assert client.fleet.verify_log == []


async def test_node_states_list_every_node_on_9_13_and_later(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """9.13+: ``cluster_availability`` and ``node_states`` with each node's state."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_2}@sim-0000-02",))
    client = await _client(start_fleet, session, spec, version="9.13.1")
    km = key_manager(client.cluster)
    answer = await client.get(_servers_path(km) + "?fields=connectivity")
    nodes = [{"name": n.name, "uuid": n.uuid} for n in client.cluster.nodes]
    by_server = {r["server"]: r["connectivity"] for r in answer.body["records"]}
    assert by_server[OLD_1] == {
        "cluster_availability": True,
        "node_states": [{"node": node, "state": "available"} for node in nodes],
    }
    assert by_server[OLD_2] == {
        "cluster_availability": False,
        "node_states": [
            {"node": nodes[0], "state": "available"},
            {"node": nodes[1], "state": "not_responding"},
        ],
    }
    logged = [(r.kind, r.server, r.passed, r.states) for r in client.fleet.verify_log]
    assert logged == [
        (VerifyKind.CONNECTIVITY, OLD_1, True, ("available", "available")),
        (VerifyKind.CONNECTIVITY, OLD_2, False, ("available", "not_responding")),
    ]


async def test_records_list_only_the_nodes_not_available_before_9_13(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """9.7-9.12: ``cluster_availability`` and ``records`` naming only the nodes not available."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_2}@sim-0000-01",))
    client = await _client(start_fleet, session, spec, version="9.12.1")
    km = key_manager(client.cluster)
    node = client.cluster.nodes[0]
    fine = await client.get(_servers_path(km, OLD_1) + "?fields=connectivity")
    down = await client.get(_servers_path(km, OLD_2) + "?fields=connectivity")
    assert fine.body["connectivity"] == {"cluster_availability": True, "records": []}
    assert down.body["connectivity"] == {
        "cluster_availability": False,
        "records": [{"node": {"name": node.name, "uuid": node.uuid}, "state": "not_responding"}],
    }


@pytest.mark.parametrize(
    ("version", "fields", "code"),
    [
        ("9.12.1", "connectivity.node_states", "262197"),
        ("9.13.1", "connectivity.records", "262197"),
        ("9.6.0", "connectivity", "262197"),
        ("9.13.1", "connectivity.node_states", None),
        ("9.7.0", "connectivity.cluster_availability", None),
    ],
)
async def test_connectivity_fields_are_those_of_the_version(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    version: str,
    fields: str,
    code: str | None,
) -> None:
    """Each version knows its own shape; asking another one's is an unexpected argument."""
    client = await _client(start_fleet, session, version=version)
    km = key_manager(client.cluster)
    answer = await client.get(_servers_path(km, OLD_1) + f"?fields={fields}")
    assert answer.code == code
    if code is None:
        (part,) = fields.split(".")[1:]
        assert set(answer.body["connectivity"]) == {part}


async def test_a_server_just_added_is_unknown_until_its_connect_delay_passes(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """With ``connect_delay``, the verification must poll: unknown first, then available."""
    spec = dataclasses.replace(MIGRATION, faults=Faults(connect_delay=0.3))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    assert (await client.post(_servers_path(km), {"server": NEW})).status == 201
    path = _servers_path(km, NEW) + "?fields=connectivity.node_states.state"
    first = await client.get(path)
    assert {s["state"] for s in first.body["connectivity"]["node_states"]} == {"unknown"}
    old = await client.get(_servers_path(km, OLD_1) + "?fields=connectivity")
    assert old.body["connectivity"]["cluster_availability"] is True
    await asyncio.sleep(0.35)
    later = await client.get(path)
    assert {s["state"] for s in later.body["connectivity"]["node_states"]} == {"available"}
    assert [r.passed for r in client.fleet.verify_log if r.server == NEW] == [False, True]


async def test_connectivity_filters_select_servers_by_availability(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """``connectivity.cluster_availability=false`` finds the servers some node cannot reach."""
    spec = dataclasses.replace(MIGRATION, unreachable_servers=(f"{OLD_2}@sim-0000-01",))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    answer = await client.get(
        _servers_path(km) + "?connectivity.cluster_availability=false&fields=connectivity"
    )
    assert [r["server"] for r in answer.body["records"]] == [OLD_2]


# Keys per node.


async def test_keys_per_node_list_every_key_with_its_server_and_restored(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """9.11+: key_id, key_server, key_type, key_tag, key_store_type and restored per node."""
    client = await _client(start_fleet, session, version="9.11.1")
    km = key_manager(client.cluster)
    node = client.cluster.nodes[1]
    fields = "key_id,key_server,key_type,key_tag,key_store_type,restored,node"
    answer = await client.get(_keys_path(km, node.uuid) + f"?fields={fields}")
    assert answer.status == 200
    assert [r["key_id"] for r in answer.body["records"]] == [k.key_id for k in km.keys]
    for record, key in zip(answer.body["records"], km.keys, strict=True):
        assert record["key_server"] == OLD_1
        assert record["key_type"] == "vek"
        assert record["key_tag"] == key.key_tag
        assert record["key_store_type"] == "kmip"
        assert record["restored"] is True
        assert record["node"] == {"name": node.name, "uuid": node.uuid}
    one = await client.get(f"{_keys_path(km, node.uuid)}/{km.keys[0].key_id}")
    assert one.body["key_id"] == km.keys[0].key_id
    assert [(r.kind, r.node_uuid, r.passed) for r in client.fleet.verify_log] == [
        (VerifyKind.KEYS, node.uuid, True)
    ]


@pytest.mark.parametrize(
    ("version", "path", "status", "code"),
    [
        ("9.10.1", "keys", 404, "3"),
        ("9.12.1", "restore", 404, "3"),
        ("9.15.1", "keys-of-no-node", 404, "4"),
        ("9.15.1", "no-such-key", 404, "4"),
    ],
)
async def test_keys_and_restore_exist_only_from_their_release(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    version: str,
    path: str,
    status: int,
    code: str,
) -> None:
    """Keys per node from 9.11, restore from 9.13; a node or key that is not there is a 404."""
    client = await _client(start_fleet, session, version=version)
    km = key_manager(client.cluster)
    node = client.cluster.nodes[0].uuid
    if path == "restore":
        answer = await client.post(f"{KMS}/{km.uuid}/restore", {"key_server": OLD_1})
    elif path == "keys-of-no-node":
        answer = await client.get(_keys_path(km, "00000000-0000-4000-8000-000000000000"))
    elif path == "no-such-key":
        answer = await client.get(f"{_keys_path(km, node)}/0000")
    else:
        answer = await client.get(_keys_path(km, node))
    assert (answer.status, answer.code) == (status, code)


# DELETE.


@pytest.mark.parametrize("spelling", ["raw", "encoded", "no-port"])
async def test_delete_removes_a_server_however_the_path_spells_it(
    start_fleet: StartFleet, session: aiohttp.ClientSession, spelling: str
) -> None:
    """DELETE answers 200 ``{}`` for ``host:port``, its %-encoding, or the host alone."""
    client = await _client(start_fleet, session)
    km = key_manager(client.cluster)
    name = {"raw": OLD_1, "encoded": urllib.parse.quote(OLD_1, safe=""), "no-port": OLD_1[:-5]}
    answer = await client.delete(f"{KMS}/{km.uuid}/key-servers/{name[spelling]}")
    assert (answer.status, answer.body) == (200, {})
    assert list(km.servers) == [OLD_2]
    (write,) = client.fleet.write_log
    assert (write.method, write.server, write.applied, write.status) == ("DELETE", OLD_1, True, 200)
    assert write.force is False


@pytest.mark.parametrize("encode", [True, False])
async def test_delete_removes_an_ipv6_server(
    start_fleet: StartFleet, session: aiohttp.ClientSession, encode: bool
) -> None:
    """``[fd20::1]:5696`` raw or encoded names the IPv6 server."""
    client = await _client(start_fleet, session, SPEC)
    km = key_manager(client.cluster)
    km.servers["[fd20::1]:5696"] = ()
    name = "%5Bfd20%3A%3A1%5D%3A5696" if encode else "[fd20::1]:5696"
    assert (await client.delete(f"{KMS}/{km.uuid}/key-servers/{name}")).status == 200
    assert km.servers == {}


async def test_delete_of_a_server_not_configured_is_65536843_404(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A server already gone: 404 with 65536843, recorded as a refused DELETE."""
    client = await _client(start_fleet, session)
    km = key_manager(client.cluster)
    answer = await client.delete(_servers_path(km, NEW))
    assert (answer.status, answer.code) == (404, "65536843")
    (write,) = client.fleet.write_log
    assert (write.method, write.server, write.applied, write.code) == (
        "DELETE",
        NEW,
        False,
        "65536843",
    )
    assert list(km.servers) == [OLD_1, OLD_2]
    gone = await client.get(_servers_path(km, NEW))
    assert gone.status == 404


async def test_delete_of_the_only_holder_is_refused_then_allowed_after_a_restore(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """65536700 while a key lives only on that server; a restore from the new one lifts it."""
    spec = dataclasses.replace(MIGRATION, unreplicated_servers=(OLD_2,))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    assert (await client.post(_servers_path(km), {"server": NEW})).status == 201
    assert (await client.delete(_servers_path(km, OLD_1))).status == 200
    refused = await client.delete(_servers_path(km, OLD_2))
    assert (refused.status, refused.code) == (400, "65536700")
    assert list(km.servers) == [OLD_2, NEW]
    job = await _restore(client, km, NEW)
    assert job["state"] == "success"
    assert (await client.delete(_servers_path(km, OLD_2))).status == 200
    assert list(km.servers) == [NEW]
    assert [(w.method, w.server, w.code) for w in client.fleet.write_log] == [
        ("POST", NEW, None),
        ("DELETE", OLD_1, None),
        ("DELETE", OLD_2, "65536700"),
        ("DELETE", OLD_2, None),
    ]


async def test_new_servers_that_start_empty_leave_the_last_old_one_holding_the_keys(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Without copies, the last old server holds the keys: refused until a restore."""
    spec = dataclasses.replace(MIGRATION, new_server_copies=False)
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    assert (await client.post(_servers_path(km), {"server": NEW})).status == 201
    assert (await client.delete(_servers_path(km, OLD_1))).status == 200
    assert (await client.delete(_servers_path(km, OLD_2))).code == "65536700"
    assert (await _restore(client, km, NEW))["state"] == "success"
    assert (await client.delete(_servers_path(km, OLD_2))).status == 200


async def test_the_last_server_of_a_key_manager_with_keys_cannot_be_deleted(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Removing every server would lose the keys: the last one is refused."""
    client = await _client(start_fleet, session)
    km = key_manager(client.cluster)
    assert (await client.delete(_servers_path(km, OLD_1))).status == 200
    assert (await client.delete(_servers_path(km, OLD_2))).code == "65536700"


async def test_force_is_accepted_from_9_11_and_refused_before(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """``force=true`` exists from 9.11 (and is recorded); on 9.10 it is an unexpected argument."""
    client = await _client(start_fleet, session, version="9.10.1")
    km = key_manager(client.cluster)
    old = await client.delete(_servers_path(km, OLD_1) + "?force=true")
    assert (old.status, old.code) == (400, "262197")
    client.cluster.version = "9.11.1"
    assert (await client.delete(_servers_path(km, OLD_1) + "?force=true")).status == 200
    assert [w.force for w in client.fleet.write_log] == [False, True]


# Restore.


async def test_restore_answers_202_and_a_job_that_restores_every_node(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The job restores each key on every node and leaves a copy on the server restored from."""
    spec = dataclasses.replace(MIGRATION, new_server_copies=False)
    client = await _client(start_fleet, session, spec, version="9.13.1")
    km = key_manager(client.cluster)
    node = client.cluster.nodes[0]
    km.keys[0].unrestored.add(node.uuid)
    before = await client.get(_keys_path(km, node.uuid) + "?fields=restored")
    assert before.body["records"][0]["restored"] is False
    await client.post(_servers_path(km), {"server": NEW})
    job = await _restore(client, km, "kms-new.example.com")
    assert job["state"] == "success"
    after = await client.get(_keys_path(km, node.uuid) + "?fields=restored")
    assert all(r["restored"] for r in after.body["records"])
    assert all(NEW in key.holders for key in km.keys)
    kinds = [(r.kind, r.passed) for r in client.fleet.verify_log]
    assert kinds == [
        (VerifyKind.KEYS, False),
        (VerifyKind.RESTORE, True),
        (VerifyKind.KEYS, True),
    ]


async def test_restore_from_a_server_one_node_cannot_reach_fails_its_job(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The job fails naming the node; that node's keys stay unrestored."""
    spec = dataclasses.replace(
        MIGRATION, unreachable_servers=(f"{NEW}@sim-0000-02",), new_server_copies=False
    )
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    second = client.cluster.nodes[1]
    km.keys[0].unrestored.add(second.uuid)
    await client.post(_servers_path(km), {"server": NEW})
    job = await _restore(client, km, NEW)
    assert job["state"] == "failure"
    assert job["error"]["code"] == "65536921"
    assert "sim-0000-02" in job["message"]
    assert second.uuid in km.keys[0].unrestored


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"key_server": NEW}, 400, "65536843"),
        ({}, 400, "262186"),
        ({"key_server": OLD_1, "colour": "red"}, 400, "262197"),
        ({"key_server": OLD_1, "node": {"name": "elsewhere-01"}}, 400, "262196"),
    ],
    ids=["not-configured", "no-server", "unexpected", "no-such-node"],
)
async def test_restore_refuses_what_it_cannot_do(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    body: dict[str, object],
    status: int,
    code: str,
) -> None:
    """A restore names a configured primary, and nothing ONTAP does not know."""
    client = await _client(start_fleet, session)
    km = key_manager(client.cluster)
    answer = await client.post(f"{KMS}/{km.uuid}/restore", body)
    assert (answer.status, answer.code) == (status, code)


# Faults on DELETE.


@pytest.mark.parametrize(
    ("faults", "status", "code"),
    [
        (Faults(quorum_rate=1.0), 400, "65536600"),
        (Faults(transient_rate=1.0), 409, "2621573"),
    ],
    ids=["quorum", "locked"],
)
async def test_transient_delete_faults_refuse_before_applying(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    faults: Faults,
    status: int,
    code: str,
) -> None:
    """65536600 (node out of quorum) and 2621573 (SVM locked) change nothing."""
    client = await _client(start_fleet, session, dataclasses.replace(MIGRATION, faults=faults))
    km = key_manager(client.cluster)
    answer = await client.delete(_servers_path(km, OLD_1))
    assert (answer.status, answer.code) == (status, code)
    assert list(km.servers) == [OLD_1, OLD_2]
    (write,) = client.fleet.write_log
    assert (write.applied, write.code) == (False, code)


async def test_force_skips_only_the_quorum_check(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """``force=true`` passes a node out of quorum, never the only-holder check."""
    spec = dataclasses.replace(MIGRATION, faults=Faults(quorum_rate=1.0))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    assert (await client.delete(_servers_path(km, OLD_1) + "?force=true")).status == 200
    refused = await client.delete(_servers_path(km, OLD_2) + "?force=true")
    assert refused.code == "65536700"


async def test_an_ambiguous_delete_is_applied_then_dropped(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The answer is lost after the server is removed; a GET then reads 404.

    aiohttp (3.14) resends an idempotent request once when its connection drops, so this
    client's DELETE goes out a second time and meets 65536843: the write log shows both.
    """
    spec = dataclasses.replace(MIGRATION, faults=Faults(ambiguous_rate=1.0))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    answer = await client.delete(_servers_path(km, OLD_1))
    assert answer.code == "65536843"
    assert list(km.servers) == [OLD_2]
    writes = [(w.method, w.server, w.applied, w.status) for w in client.fleet.write_log]
    assert writes == [("DELETE", OLD_1, True, None), ("DELETE", OLD_1, False, 404)]
    assert (await client.get(_servers_path(km, OLD_1))).status == 404


async def test_a_delete_answered_500_after_applying_has_applied(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """``applied_error500_rate`` answers 500 once the server is already removed."""
    spec = dataclasses.replace(MIGRATION, faults=Faults(applied_error500_rate=1.0))
    client = await _client(start_fleet, session, spec)
    km = key_manager(client.cluster)
    answer = await client.delete(_servers_path(km, OLD_1))
    assert answer.status == 500
    assert list(km.servers) == [OLD_2]
    assert [(w.applied, w.status) for w in client.fleet.write_log] == [(True, 500)]


@pytest.mark.parametrize(
    "faults",
    [Faults(reset_rate=1.0), Faults(error500_rate=1.0)],
    ids=["reset", "error500"],
)
async def test_request_faults_stop_a_delete_before_it_is_a_write(
    start_fleet: StartFleet, session: aiohttp.ClientSession, faults: Faults
) -> None:
    """Resets and 500s before ONTAP looked: nothing removed, nothing in the write log."""
    client = await _client(start_fleet, session, dataclasses.replace(MIGRATION, faults=faults))
    km = key_manager(client.cluster)
    with_answer = faults.error500_rate > 0
    if with_answer:
        assert (await client.delete(_servers_path(km, OLD_1))).status == 500
    else:
        with pytest.raises(DROPPED):
            await client.delete(_servers_path(km, OLD_1))
    assert list(km.servers) == [OLD_1, OLD_2]
    assert client.fleet.write_log == []


async def test_delete_faults_repeat_under_one_seed(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The same seed and requests give the same refusals, in the same order."""
    faults = Faults(quorum_rate=0.4, transient_rate=0.3)

    async def codes(seed: int) -> list[str | None]:
        """Delete one server twelve times, put back out of band; every DELETE's code."""
        spec = dataclasses.replace(MIGRATION, faults=faults, seed=seed)
        client = await _client(start_fleet, session, spec)
        km = key_manager(client.cluster)
        seen: list[str | None] = []
        for _ in range(12):
            answer = await client.delete(_servers_path(km, OLD_1))
            seen.append(answer.code)
            km.servers[OLD_1] = ()
        return seen

    first, again = await codes(5), await codes(5)
    assert first == again
    assert {"65536600", "2621573", None} <= set(first)


async def test_connect_delays_repeat_under_one_seed(start_fleet: StartFleet) -> None:
    """The seeded connect delays are the same under one seed."""

    async def delays() -> list[float]:
        """The relative connect times of a server added to each SVM's key manager."""
        fleet = await start_fleet(dataclasses.replace(MIGRATION, faults=Faults(connect_delay=10.0)))
        async with aiohttp.ClientSession() as session:
            client = Client(session, fleet, "sim-0000")
            found: list[float] = []
            for svm in ("svm000", "svm001"):
                km = key_manager(client.cluster, svm)
                await client.post(_servers_path(km), {"server": NEW})
                times = list(km.available_at[NEW].values())
                found += [round(t - min(times), 6) for t in times]
            return found

    first, again = await delays(), await delays()
    assert first == again
    assert any(first)


# The journal.


def _deletes_before_verified(
    journal: tuple[WriteRecord | VerifyRecord, ...], verified: Callable[[str], bool]
) -> list[WriteRecord]:
    """The DELETEs that came before a passing connectivity read of every server in ``verified``."""
    passed: set[str] = set()
    early: list[WriteRecord] = []
    for record in journal:
        if isinstance(record, VerifyRecord):
            if record.kind is VerifyKind.CONNECTIVITY and record.passed:
                passed.add(record.server)
        elif record.method == "DELETE" and not all(
            s in passed for s in (NEW, OLD_1, OLD_2) if verified(s)
        ):
            early.append(record)
    return early


async def test_the_journal_orders_deletes_and_verification_reads_of_one_key_manager(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Writes and connectivity reads merge in time order, per key manager."""
    client = await _client(start_fleet, session)
    km = key_manager(client.cluster)
    other = key_manager(client.cluster, "svm001")
    await client.delete(_servers_path(other, OLD_1))
    await client.post(_servers_path(km), {"server": NEW})
    await client.get(_servers_path(km, NEW) + "?fields=connectivity")
    await client.delete(_servers_path(km, OLD_1))
    journal = client.fleet.journal(key_manager_uuid=km.uuid)
    described = [
        (r.method, r.server) if isinstance(r, WriteRecord) else (str(r.kind), r.server)
        for r in journal
    ]
    assert described == [("POST", NEW), ("connectivity", NEW), ("DELETE", OLD_1)]
    assert _deletes_before_verified(journal, lambda s: s == NEW) == []
    everything = client.fleet.journal()
    assert [r.at for r in everything] == sorted(r.at for r in everything)
    early = _deletes_before_verified(everything, lambda s: s == NEW)
    assert [(w.key_manager_uuid, w.server) for w in early] == [(other.uuid, OLD_1)]


@pytest.mark.parametrize(
    "make",
    [
        lambda: dataclasses.replace(MIGRATION, nodes=0),
        lambda: dataclasses.replace(MIGRATION, nodes=25),
        lambda: dataclasses.replace(MIGRATION, unreachable_servers=("kms bad",)),
        lambda: dataclasses.replace(MIGRATION, unreachable_servers=("kms.example.com@",)),
        lambda: dataclasses.replace(MIGRATION, unreplicated_servers=("",)),
        lambda: Faults(quorum_rate=1.5),
        lambda: Faults(connect_delay=-1.0),
    ],
)
def test_fleet_spec_refuses_impossible_migration_knobs(make: Callable[[], object]) -> None:
    """Node counts, server names and DELETE fault settings are checked when made."""
    with pytest.raises(ValueError):
        make()


def test_fleet_spec_normalises_the_servers_it_names() -> None:
    """Server names are normalised as ONTAP compares them; the place is kept as written."""
    spec = dataclasses.replace(
        MIGRATION,
        unreachable_servers=("KMS-A.example.com@sim-0000-01", "fd20::1"),
        unreplicated_servers=("KMS-B.example.com",),
    )
    assert spec.unreachable_servers == ("kms-a.example.com:5696@sim-0000-01", "[fd20::1]:5696")
    assert spec.unreplicated_servers == ("kms-b.example.com:5696",)
