"""Faults, each observed as a client over real sockets sees it, and their determinism."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import aiohttp
import orjson
import pytest

from bulkkm.simulator import Faults, SimulatedFleet

from ._support import SPEC, Client, StartFleet, key_manager

KMS = "/api/security/key-managers"
DROPPED = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


async def _client(
    start_fleet: StartFleet, session: aiohttp.ClientSession, faults: Faults, *, seed: int = 11
) -> Client:
    """A client to ``sim-0000`` of a fresh fleet where every cluster has ``faults``."""
    fleet = await start_fleet(dataclasses.replace(SPEC, faults=faults, seed=seed))
    return Client(session, fleet, "sim-0000")


async def test_latency_beyond_the_client_timeout_times_out(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A cluster slower than the client's timeout is a client-side timeout."""
    client = await _client(start_fleet, session, Faults(latency=5.0))
    with pytest.raises(TimeoutError):
        await client.get("/api/cluster", seconds=0.1)


async def test_transient_rate_cycles_through_the_transient_codes_and_applies_nothing(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """At rate 1 every POST fails with 65536834, 65536852, 65536921, 2621573 in turn."""
    client = await _client(start_fleet, session, Faults(transient_rate=1.0))
    km = key_manager(client.cluster)
    answers = [
        await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
        for _ in range(5)
    ]
    assert [a.code for a in answers] == ["65536834", "65536852", "65536921", "2621573", "65536834"]
    assert [a.status for a in answers] == [500, 500, 500, 409, 500]
    assert km.servers == {}


async def test_transient_rate_leaves_gets_alone(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Transient KMIP failures only touch key-server POSTs."""
    client = await _client(start_fleet, session, Faults(transient_rate=1.0))
    assert (await client.get(KMS)).status == 200


async def test_error500_rate_answers_500_with_an_error_body(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """At rate 1 any request answers 500 with ONTAP's error document."""
    client = await _client(start_fleet, session, Faults(error500_rate=1.0))
    answer = await client.get("/api/cluster")
    assert answer.status == 500
    assert answer.code is not None


async def test_reset_drops_the_connection_before_applying(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A reset POST gets no answer and changes nothing."""
    client = await _client(start_fleet, session, Faults(reset_rate=1.0))
    km = key_manager(client.cluster)
    with pytest.raises(DROPPED):
        await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert km.servers == {}


async def test_ambiguous_post_is_applied_then_dropped(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """An ambiguous POST gets no answer, yet the server is configured; a re-POST is 65536870."""
    client = await _client(start_fleet, session, Faults(ambiguous_rate=1.0))
    fleet_km = key_manager(client.cluster)
    path = f"{KMS}/{fleet_km.uuid}/key-servers"
    with pytest.raises(DROPPED):
        await client.post(path, {"server": "kms-a.example.com"})
    assert list(fleet_km.servers) == ["kms-a.example.com:5696"]
    again = await client.post(path, {"server": "kms-a.example.com"})
    assert again.code == "65536870"


async def test_ambiguous_write_is_logged_applied_without_status(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The write log shows the ambiguous POST as applied with no answer sent."""
    fleet = await start_fleet(dataclasses.replace(SPEC, faults=Faults(ambiguous_rate=1.0)))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    with pytest.raises(DROPPED):
        await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    (write,) = fleet.write_log
    assert (write.applied, write.status) == (True, None)


async def test_hung_request_waits_for_the_client_and_shutdown_still_works(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A hung request never answers: the client times out, and closing the fleet is prompt."""
    async with asyncio.timeout(10):
        fleet = await start_fleet(dataclasses.replace(SPEC, faults=Faults(hang_rate=1.0)))
        client = Client(session, fleet, "sim-0000")
        with pytest.raises(TimeoutError):
            await client.get("/api/cluster", seconds=0.2)
        pending = asyncio.create_task(client.get("/api/cluster", seconds=30))
        await asyncio.sleep(0.1)
        await fleet.close()
        with pytest.raises(DROPPED):
            await pending


async def test_dead_cluster_refuses_connections(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Nothing listens on a dead cluster's port; the others answer."""
    spec = dataclasses.replace(SPEC, cluster_faults={"sim-0000": Faults(dead=True)})
    fleet = await start_fleet(spec)
    with pytest.raises(aiohttp.ClientConnectorError):
        await Client(session, fleet, "sim-0000").get("/api/cluster")
    assert (await Client(session, fleet, "sim-0001").get("/api/cluster")).status == 200


async def test_set_faults_kills_and_revives_a_cluster_on_the_same_port(
    fleet: SimulatedFleet, session: aiohttp.ClientSession
) -> None:
    """``set_faults(dead=True)`` closes the port at once; clearing it serves again."""
    client = Client(session, fleet, "sim-0001")
    address = client.cluster.address
    assert (await client.get("/api/cluster")).status == 200
    fleet.set_faults("sim-0001", Faults(dead=True))
    with pytest.raises((aiohttp.ClientConnectorError, *DROPPED)):
        await client.get("/api/cluster")
    fleet.set_faults("sim-0001", Faults())
    assert (await client.get("/api/cluster")).status == 200
    assert client.cluster.address == address


async def test_max_in_flight_drops_the_excess_at_the_connection(
    start_fleet: StartFleet,
) -> None:
    """With a cap of 2, six concurrent slow requests: two answered, the rest dropped."""
    fleet = await start_fleet(
        dataclasses.replace(SPEC, faults=Faults(latency=0.5, max_in_flight=2))
    )
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(session, fleet, "sim-0000")
        results = await asyncio.gather(
            *(client.get("/api/cluster") for _ in range(6)), return_exceptions=True
        )
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, DROPPED) for r in results if isinstance(r, BaseException))
    assert len(answered) == 2
    assert fleet.peak_in_flight("sim-0000") == 2
    # aiohttp may retry an idempotent request once on a fresh connection; each retry is
    # refused too.
    assert fleet.refused("sim-0000") >= 4


async def test_fault_draws_repeat_under_the_same_seed(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Two fleets with one seed fail the same POSTs; another seed fails others."""

    async def outcomes(seed: int) -> list[str | None]:
        """The codes of 12 POSTs to one key manager at transient rate 0.5."""
        faults = Faults(transient_rate=0.5)
        client = await _client(start_fleet, session, faults, seed=seed)
        km = key_manager(client.cluster)
        codes = []
        for i in range(12):
            body = {"server": f"kms-{i}.example.com"}
            codes.append((await client.post(f"{KMS}/{km.uuid}/key-servers", body)).code)
            km.servers.clear()
        return codes

    first, again, other = await outcomes(1), await outcomes(1), await outcomes(2)
    assert first == again
    assert first != other
    assert None in first
    assert any(first)


async def test_jitter_draws_do_not_change_the_state(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """Latency with jitter slows answers without changing what they say."""
    plain = await _client(start_fleet, session, Faults())
    jittery = await _client(start_fleet, session, Faults(latency=0.01, jitter=0.02))
    assert (await plain.get(f"{KMS}?fields=*")).body == (await jittery.get(f"{KMS}?fields=*")).body


async def test_job_poll_500_leaves_the_job_to_finish_and_apply(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A job poll answered 500 says nothing of the job: it goes on and applies the server."""
    spec = dataclasses.replace(SPEC, faults=Faults(job_error500_rate=1.0), job_mode=True)
    fleet = await start_fleet(spec)
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    accepted = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert accepted.status == 202
    href = accepted.body["job"]["_links"]["self"]["href"]
    await asyncio.sleep(spec.job_delay * 3)
    poll = await client.get(href)
    assert (poll.status, poll.code) == (500, "13")
    assert list(km.servers) == ["kms-a.example.com:5696"]
    assert [(w.applied, w.status) for w in fleet.write_log] == [(True, 202)]


@pytest.mark.parametrize(
    ("fault", "status", "body"),
    [
        ("applied_error500_rate", 500, b'{"error":{"message":"Internal Error.'),
        ("garbled_201_rate", 201, b'{"num_records": 1, "recor'),
        ("empty_204_rate", 204, b""),
        ("jobless_202_rate", 202, b'{"job":{"uuid":"'),
    ],
)
async def test_wrong_answers_come_after_the_post_is_applied(
    start_fleet: StartFleet,
    session: aiohttp.ClientSession,
    fault: str,
    status: int,
    body: bytes,
) -> None:
    """A 500, a 201 that is not JSON, a 204 or a 202 without a job link: applied all the same."""
    rate: dict[str, Any] = {fault: 1.0}
    fleet = await start_fleet(dataclasses.replace(SPEC, faults=Faults(**rate)))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    auth = aiohttp.encode_basic_auth(client.cluster.username, client.cluster.password)
    async with session.post(
        f"{client.base}{KMS}/{km.uuid}/key-servers",
        data=b'{"server": "kms-a.example.com"}',
        headers={"Authorization": auth, "Content-Type": "application/json"},
        ssl=client.ssl,
    ) as response:
        raw = await response.read()
        assert response.status == status
    assert raw.startswith(body)
    if status == 202:
        assert "_links" not in orjson.loads(raw)["job"]
    assert list(km.servers) == ["kms-a.example.com:5696"]
    assert [(w.applied, w.status) for w in fleet.write_log] == [(True, status)]
    again = await client.post(f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"})
    assert again.code == "65536870"


async def test_wrong_answer_draws_repeat_under_the_same_seed(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """The answer faults are drawn from the cluster's seeded streams: one seed, one sequence."""

    async def statuses(seed: int) -> list[int]:
        """The statuses of 12 POSTs with every answer fault at rate 0.3."""
        faults = Faults(
            applied_error500_rate=0.3,
            garbled_201_rate=0.3,
            empty_204_rate=0.3,
            jobless_202_rate=0.3,
        )
        fleet = await start_fleet(dataclasses.replace(SPEC, faults=faults, seed=seed))
        client = Client(session, fleet, "sim-0000")
        km = key_manager(client.cluster)
        for i in range(12):
            body = {"server": f"kms-{i}.example.com"}
            with contextlib.suppress(orjson.JSONDecodeError):
                await client.post(f"{KMS}/{km.uuid}/key-servers", body)
            km.servers.clear()
        return [int(w.status or 0) for w in fleet.write_log]

    first, again = await statuses(3), await statuses(3)
    assert first == again
    assert len(set(first)) > 2
