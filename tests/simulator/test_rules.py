"""ONTAP's refusals of key-server POSTs, each reached over a real socket."""

from __future__ import annotations

import pytest

from bulkkm.simulator import Mode, SimulatedFleet

from ._support import Client, key_manager

KMS = "/api/security/key-managers"


def _servers(n: int) -> dict[str, tuple[str, ...]]:
    """``n`` configured primaries."""
    return {f"kms-old-{i}.example.com:5696": () for i in range(n)}


async def test_fifth_primary_is_refused_with_65536038(
    fleet: SimulatedFleet, client: Client
) -> None:
    """A key manager with 4 primaries refuses a fifth; nothing changes."""
    km = key_manager(client.cluster)
    km.servers = _servers(4)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-new.example.com"})
    assert (answer.status, answer.code) == (400, "65536038")
    assert len(km.servers) == 4
    assert not fleet.write_log[-1].applied


async def test_records_that_would_exceed_four_are_refused_whole(client: Client) -> None:
    """Three existing plus two in one ``records`` POST is refused, and neither is added."""
    client.cluster.version = "9.11.1"
    km = key_manager(client.cluster)
    km.servers = _servers(3)
    body = {"records": [{"server": "kms-a.example.com"}, {"server": "kms-b.example.com"}]}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert answer.code == "65536038"
    assert len(km.servers) == 3


@pytest.mark.parametrize("name", ["kms-old-0.example.com", "KMS-OLD-0.example.com:5696"])
async def test_configured_server_is_refused_with_65536870(client: Client, name: str) -> None:
    """Re-adding a configured server (in any spelling) answers 65536870."""
    km = key_manager(client.cluster)
    km.servers = _servers(1)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": name})
    assert (answer.status, answer.code) == (400, "65536870")


async def test_same_server_twice_in_one_request_is_65536871(client: Client) -> None:
    """Two records naming one server (after normalisation) answer 65536871."""
    client.cluster.version = "9.9.1"
    km = key_manager(client.cluster)
    body = {"records": [{"server": "kms-a.example.com"}, {"server": "KMS-A.example.com:5696"}]}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert (answer.status, answer.code) == (400, "65536871")
    assert km.servers == {}


async def test_onboard_key_manager_refuses_servers_with_65536828(client: Client) -> None:
    """Adding a server to an onboard key manager answers 65536828."""
    km = key_manager(client.cluster)
    km.mode = Mode.ONBOARD
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert (answer.status, answer.code) == (400, "65536828")


async def test_missing_client_certificate_is_65536821(client: Client) -> None:
    """A key manager flagged without its client certificate answers 65536821."""
    km = key_manager(client.cluster)
    km.client_certificate_missing = True
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert (answer.status, answer.code) == (400, "65536821")


@pytest.mark.parametrize(
    ("flag", "code"), [("multitenant_unsupported", "65536822"), ("metrocluster", "65536824")]
)
async def test_cluster_flags_refuse_svm_scope_but_not_cluster_scope(
    client: Client, flag: str, code: str
) -> None:
    """Multitenant-unsupported and MetroCluster clusters refuse SVM-scope adds only."""
    setattr(client.cluster, flag, True)
    svm_km = key_manager(client.cluster)
    refused = await client.post(f"{KMS}/{svm_km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert (refused.status, refused.code) == (400, code)
    cluster_km = key_manager(client.cluster, None)
    added = await client.post(
        f"{KMS}/{cluster_km.uuid}/key-servers", {"server": "kms-a.example.com"}
    )
    assert added.status == 201


@pytest.mark.parametrize("code", ["66060338", "66060339", "66060340"])
async def test_kmip_tls_failure_for_one_server_name(client: Client, code: str) -> None:
    """``kmip_errors`` makes adding that server fail with its KMIP TLS code (HTTP 500)."""
    client.cluster.kmip_errors["kms-bad.example.com:5696"] = code
    km = key_manager(client.cluster)
    bad = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-bad.example.com"})
    assert (bad.status, bad.code) == (500, code)
    good = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-good.example.com"})
    assert good.status == 201
    assert list(km.servers) == ["kms-good.example.com:5696"]


@pytest.mark.parametrize(
    ("code", "status"),
    [("65536834", 500), ("65536852", 500), ("65536921", 500), ("2621573", 409)],
)
async def test_transient_kmip_codes_can_be_set_per_server(
    client: Client, code: str, status: int
) -> None:
    """The transient KMIP codes (and the Vserver lock) are reachable per server name."""
    client.cluster.kmip_errors["kms-flaky.example.com:5696"] = code
    km = key_manager(client.cluster)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-flaky.example.com"})
    assert (answer.status, answer.code) == (status, code)


@pytest.mark.parametrize("version", ["9.6.0", "9.7.0"])
async def test_secondaries_before_9_8_are_an_unexpected_argument(
    client: Client, version: str
) -> None:
    """Before 9.8, ``secondary_key_servers`` is refused with 262197."""
    client.cluster.version = version
    km = key_manager(client.cluster)
    body = {"server": "kms-a.example.com", "secondary_key_servers": ["dr.example.com"]}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert (answer.status, answer.code) == (400, "262197")
    assert answer.body["error"]["target"] == "secondary_key_servers"


async def test_records_before_9_8_are_an_unexpected_argument(client: Client) -> None:
    """Before 9.8, ``records`` is refused with 262197."""
    client.cluster.version = "9.7.0"
    km = key_manager(client.cluster)
    body = {"records": [{"server": "kms-a.example.com"}]}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert (answer.status, answer.code) == (400, "262197")


async def test_server_and_records_together_are_refused(client: Client) -> None:
    """A body with both ``server`` and ``records`` is a 400 and adds nothing."""
    client.cluster.version = "9.13.1"
    km = key_manager(client.cluster)
    body = {"server": "kms-a.example.com", "records": [{"server": "kms-b.example.com"}]}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert answer.status == 400
    assert km.servers == {}


@pytest.mark.parametrize(
    "body",
    [{}, {"server": ""}, {"server": "kms a"}, {"server": 5}, {"server": "k", "port": 1}, []],
)
async def test_malformed_post_bodies_are_400(client: Client, body: object) -> None:
    """Missing, malformed or unexpected fields answer 400 with an error body."""
    km = key_manager(client.cluster)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert answer.status == 400
    assert answer.code is not None


async def test_more_than_three_secondaries_are_refused(client: Client) -> None:
    """A PATCH with four secondaries is a 400; the old ones stay."""
    client.cluster.version = "9.16.1"
    km = key_manager(client.cluster)
    km.servers["kms-a.example.com:5696"] = ("dr",)
    path = f"{KMS}/{km.uuid}/key-servers/kms-a.example.com:5696"
    answer = await client.patch(path, {"secondary_key_servers": ["a", "b", "c", "d"]})
    assert answer.status == 400
    assert km.servers["kms-a.example.com:5696"] == ("dr",)
