"""The REST shapes ONTAP answers with, over real sockets with TLS verified."""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse

import aiohttp
import orjson
import pytest

from bulkkm.simulator import Mode, SimulatedFleet

from ._support import SPEC, Client, StartFleet, key_manager

KMS = "/api/security/key-managers"


async def test_cluster_answers_name_uuid_and_version_as_hal_json(client: Client) -> None:
    """GET /api/cluster gives name, uuid and version{full,generation,major,minor}."""
    client.cluster.version = "9.13.1"
    answer = await client.get("/api/cluster")
    assert answer.status == 200
    assert answer.content_type == "application/hal+json"
    assert answer.body["name"] == "sim-0000"
    assert answer.body["uuid"] == client.cluster.uuid
    version = answer.body["version"]
    assert (version["generation"], version["major"], version["minor"]) == (9, 13, 1)
    assert "9.13.1" in version["full"]


async def test_cluster_honours_fields(client: Client) -> None:
    """``fields=version`` leaves the name out."""
    answer = await client.get("/api/cluster?fields=version")
    assert set(answer.body) == {"version", "_links"}


async def test_svms_are_listed_and_filtered_by_name(client: Client) -> None:
    """GET /api/svm/svms lists {uuid, name}; ``name=`` filters."""
    everything = await client.get("/api/svm/svms")
    assert [r["name"] for r in everything.body["records"]] == ["svm000", "svm001", "svm002"]
    assert everything.body["num_records"] == 3
    one = await client.get("/api/svm/svms?name=svm001")
    assert [r["uuid"] for r in one.body["records"]] == [client.cluster.svm("svm001").uuid]


async def test_key_manager_collection_returns_only_keys_without_fields(client: Client) -> None:
    """Like ONTAP, a collection without ``fields`` returns uuid and links only."""
    answer = await client.get(KMS)
    assert answer.body["num_records"] == 4
    assert all(set(r) == {"uuid", "_links"} for r in answer.body["records"])


@pytest.mark.parametrize("fields", ["svm.name,external.servers", "svm.name%2Cexternal.servers"])
async def test_key_manager_fields_may_be_percent_encoded(client: Client, fields: str) -> None:
    """``fields`` works with plain or %2C-encoded commas."""
    key_manager(client.cluster).servers["kms-a.example.com:5696"] = ()
    answer = await client.get(f"{KMS}?svm.name=svm000&fields={fields}")
    (record,) = answer.body["records"]
    assert record["svm"] == {"name": "svm000"}
    assert record["external"] == {"servers": [{"server": "kms-a.example.com:5696"}]}


async def test_star_fields_leave_out_expensive_status_and_double_star_adds_it(
    client: Client,
) -> None:
    """``*`` gives every ordinary field, ``**`` the expensive ``status`` too."""
    star = await client.get(f"{KMS}?fields=*")
    assert all("scope" in r and "status" not in r for r in star.body["records"])
    both = await client.get(f"{KMS}?fields=**")
    assert all("status" in r for r in both.body["records"])
    named = await client.get(f"{KMS}?fields=status.code")
    assert all(set(r) == {"uuid", "status", "_links"} for r in named.body["records"])


async def test_unknown_field_is_refused_as_ontap_does(client: Client) -> None:
    """A typo in ``fields`` or in a filter is a 400 with code 262197."""
    for path in (f"{KMS}?fields=external.servrs", f"{KMS}?svm.nmae=svm000"):
        answer = await client.get(path)
        assert (answer.status, answer.code) == (400, "262197")


async def test_cluster_scoped_key_manager_has_no_svm(client: Client) -> None:
    """``scope=cluster`` finds the admin key manager, which has no ``svm``."""
    answer = await client.get(f"{KMS}?scope=cluster&fields=*")
    (record,) = answer.body["records"]
    assert record["scope"] == "cluster"
    assert "svm" not in record
    assert record["uuid"] == key_manager(client.cluster, None).uuid


@pytest.mark.parametrize("by", ["uuid", "svm.uuid", "external.servers.server"])
async def test_key_managers_filter_by_key_fields(client: Client, by: str) -> None:
    """Filters on uuid, svm.uuid and external.servers.server select one key manager."""
    km = key_manager(client.cluster, "svm001")
    km.servers["[fd20::1]:5696"] = ()
    assert km.svm is not None
    value = {"uuid": km.uuid, "svm.uuid": km.svm.uuid, "external.servers.server": "[fd20::1]:5696"}
    answer = await client.get(f"{KMS}?{by}={urllib.parse.quote(value[by], safe='')}")
    assert [r["uuid"] for r in answer.body["records"]] == [km.uuid]


async def test_secondaries_are_a_string_on_key_managers_and_an_array_on_key_servers(
    client: Client,
) -> None:
    """ONTAP's quirk is reproduced: "a,b" in external.servers, ["a", "b"] on /key-servers."""
    client.cluster.version = "9.12.1"
    km = key_manager(client.cluster)
    km.servers["kms-a.example.com:5696"] = ("dr1.example.com", "dr2.example.com")
    listed = await client.get(f"{KMS}/{km.uuid}?fields=external.servers")
    (server,) = listed.body["external"]["servers"]
    assert server["secondary_key_servers"] == "dr1.example.com,dr2.example.com"
    servers = await client.get(f"{KMS}/{km.uuid}/key-servers?fields=*")
    (record,) = servers.body["records"]
    assert record["secondary_key_servers"] == ["dr1.example.com", "dr2.example.com"]


async def test_paging_follows_next_href_as_path_and_query(client: Client) -> None:
    """``max_records`` pages; each ``_links.next.href`` works when followed as given."""
    seen: list[str] = []
    path: str | None = f"{KMS}?fields=svm.name%2Cscope&max_records=1"
    while path is not None:
        answer = await client.get(path)
        assert answer.body["num_records"] == len(answer.body["records"]) == 1
        seen.extend(r["uuid"] for r in answer.body["records"])
        assert all("scope" in r for r in answer.body["records"])
        path = answer.body["_links"].get("next", {}).get("href")
    assert seen == list(client.cluster.key_managers)


async def test_return_records_false_counts_only(client: Client) -> None:
    """``return_records=false`` on a GET gives the count and no records."""
    answer = await client.get(f"{KMS}?return_records=false")
    assert answer.body["num_records"] == 4
    assert "records" not in answer.body


async def test_post_adds_normalised_server_with_location(
    fleet: SimulatedFleet, client: Client
) -> None:
    """POST answers 201 with a Location naming the encoded, normalised server."""
    km = key_manager(client.cluster)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "KMS-New.Example.com"})
    assert answer.status == 201
    assert answer.location == f"{KMS}/{km.uuid}/key-servers/kms-new.example.com%3A5696"
    assert km.servers == {"kms-new.example.com:5696": ()}
    (write,) = fleet.write_log
    assert (write.method, write.server, write.applied, write.status) == (
        "POST",
        "kms-new.example.com:5696",
        True,
        201,
    )


async def test_post_return_records_gives_what_was_added_without_password(client: Client) -> None:
    """``return_records=true`` echoes the added servers; the password is never echoed."""
    client.cluster.version = "9.10.1"
    km = key_manager(client.cluster)
    body = {
        "records": [
            {
                "server": "kms-a.example.com",
                "password": "s3cret-kmip",
                "secondary_key_servers": ["dr"],
            },
            {"server": "10.0.0.7:5697"},
        ]
    }
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers?return_records=true", body)
    assert answer.status == 201
    assert answer.body == {
        "num_records": 2,
        "records": [
            {"server": "kms-a.example.com:5696", "secondary_key_servers": ["dr"]},
            {"server": "10.0.0.7:5697"},
        ],
    }


async def test_kmip_password_never_reaches_state_or_logs(
    fleet: SimulatedFleet, client: Client
) -> None:
    """A POSTed KMIP password is accepted and kept nowhere."""
    km = key_manager(client.cluster)
    body = {"server": "kms-a.example.com", "password": "s3cret-kmip"}
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", body)
    assert answer.status == 201
    dumped = orjson.dumps(fleet.state()).decode() + repr(fleet.write_log) + repr(fleet.request_log)
    assert "s3cret-kmip" not in dumped


async def test_return_records_is_ignored_before_9_7(client: Client) -> None:
    """ONTAP 9.6 answers 201 without records even when asked for them."""
    client.cluster.version = "9.6.0"
    km = key_manager(client.cluster)
    path = f"{KMS}/{km.uuid}/key-servers?return_records=true"
    answer = await client.post(path, {"server": "kms-a.example.com"})
    assert (answer.status, answer.body) == (201, {})


async def test_get_key_servers_lists_configured_primaries(client: Client) -> None:
    """GET .../key-servers?fields=* lists the primaries in order."""
    km = key_manager(client.cluster)
    km.servers.update({"kms-a.example.com:5696": (), "kms-b.example.com:5696": ()})
    answer = await client.get(f"{KMS}/{km.uuid}/key-servers?fields=*")
    assert [r["server"] for r in answer.body["records"]] == list(km.servers)


@pytest.mark.parametrize(
    "in_path",
    ["[fd20::1]:5696", "%5Bfd20%3A%3A1%5D%3A5696", "1.2.3.4:5696", "1.2.3.4%3A5696"],
)
async def test_key_server_path_accepts_raw_and_percent_encoded_names(
    client: Client, in_path: str
) -> None:
    """GET, PATCH and DELETE find the server whether its name is raw or encoded."""
    client.cluster.version = "9.14.1"
    km = key_manager(client.cluster)
    name = urllib.parse.unquote(in_path)
    km.servers[name] = ("old-dr.example.com",)
    path = f"{KMS}/{km.uuid}/key-servers/{in_path}"
    got = await client.get(path)
    assert (got.status, got.body["server"]) == (200, name)
    patched = await client.patch(path, {"secondary_key_servers": ["new-dr.example.com"]})
    assert (patched.status, patched.body) == (200, {})
    assert km.servers[name] == ("new-dr.example.com",)
    deleted = await client.delete(path)
    assert (deleted.status, deleted.body) == (200, {})
    assert name not in km.servers


async def test_unknown_key_server_is_404(client: Client) -> None:
    """A server the key manager lacks answers 404 with ONTAP's error body."""
    km = key_manager(client.cluster)
    answer = await client.get(f"{KMS}/{km.uuid}/key-servers/nowhere.example.com%3A5696")
    assert (answer.status, answer.code) == (404, "4")


async def test_unknown_key_manager_is_404_code_4(client: Client) -> None:
    """An unknown key-manager uuid answers 404, code "4" (a string)."""
    path = f"{KMS}/00000000-0000-4000-8000-000000000000/key-servers"
    answer = await client.post(path, {"server": "kms-a.example.com"})
    assert (answer.status, answer.code) == (404, "4")
    assert answer.body["error"]["message"]


async def test_wrong_password_is_401_for_that_cluster_only(
    fleet: SimulatedFleet, client: Client
) -> None:
    """Changing one cluster's password makes its requests 401; the wrong password too."""
    assert (await client.get("/api/cluster", password="wrong")).status == 401
    fleet.cluster("sim-0000").password = "rotated"
    assert (await client.get("/api/cluster", password="simulated-Passw0rd")).status == 401
    assert fleet.cluster("sim-0001").password == "simulated-Passw0rd"


async def test_unknown_api_and_wrong_method_are_refused(client: Client) -> None:
    """Unknown paths answer 404 and wrong methods 405, both with an error body."""
    assert (await client.get("/api/storage/volumes")).status == 404
    assert (await client.delete(KMS)).status == 405


async def test_job_mode_answers_202_and_applies_when_the_job_succeeds(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """In job mode a POST answers 202 with a job link; the change lands when the job ends."""
    fleet = await start_fleet(dataclasses.replace(SPEC, job_mode=True))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert answer.status == 202
    href = answer.body["job"]["_links"]["self"]["href"]
    assert href == f"/api/cluster/jobs/{answer.body['job']['uuid']}"
    states: list[str] = []
    async with asyncio.timeout(5):
        while not states or states[-1] not in ("success", "failure"):
            job = await client.get(f"{href}?fields=message%2Cstate")
            assert set(job.body) == {"uuid", "state", "message", "_links"}
            states.append(job.body["state"])
            await asyncio.sleep(0.01)
    assert states[0] in ("queued", "running")
    assert states[-1] == "success"
    assert "kms-a.example.com:5696" in km.servers


async def test_failed_job_carries_ontap_error_code(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A job whose change ONTAP refuses ends in ``failure`` with the error's code."""
    fleet = await start_fleet(dataclasses.replace(SPEC, job_mode=True, job_delay=0.0))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    km.servers["kms-a.example.com:5696"] = ()
    answer = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    href = answer.body["job"]["_links"]["self"]["href"]
    async with asyncio.timeout(5):
        for _ in range(500):
            job = await client.get(href)
            if job.body["state"] in ("success", "failure"):
                break
            await asyncio.sleep(0.01)
    assert job.body["state"] == "failure"
    assert job.body["code"] == 65536870
    assert job.body["error"]["code"] == "65536870"
    assert fleet.write_log[-1].code == "65536870"


async def test_unknown_job_is_404(client: Client) -> None:
    """A job uuid the cluster never issued answers 404."""
    answer = await client.get("/api/cluster/jobs/00000000-0000-4000-8000-000000000000")
    assert (answer.status, answer.code) == (404, "4")


async def test_onboard_key_manager_reports_onboard_enabled(client: Client) -> None:
    """An onboard key manager shows ``onboard.enabled`` and no ``external``."""
    km = key_manager(client.cluster, "svm002")
    km.mode = Mode.ONBOARD
    answer = await client.get(f"{KMS}/{km.uuid}")
    assert answer.body["onboard"] == {"enabled": True}
    assert "external" not in answer.body
