"""Latency per method and resource: slow key-server writes beside fast GETs, and defaults kept."""

from __future__ import annotations

import dataclasses

import aiohttp
import pytest

from bulkkm.simulator import Faults, RouteLatency, _cli, write_latency

from ._support import SPEC, Client, StartFleet, key_manager

KMS = "/api/security/key-managers"
SLOW = 30.0
"""A write latency no test waits out: a client timeout shows which requests it delays."""


def test_without_route_latency_every_request_takes_latency() -> None:
    """The default faults have no route latency: every method and path takes ``latency``."""
    faults = Faults(latency=0.25)
    assert faults.route_latency == ()
    for method, kind in (("GET", "cluster"), ("POST", "key_servers"), ("DELETE", "key_server")):
        assert faults.latency_of(method, kind) == 0.25


def test_the_first_matching_route_latency_wins_and_the_rest_take_latency() -> None:
    """Entries are tried in order; ``*`` matches any method or resource."""
    faults = Faults(
        latency=0.1,
        route_latency=(
            RouteLatency(method="GET", route="svms", seconds=0.3),
            *write_latency(2.0),
            RouteLatency(method="POST", route="*", seconds=0.5),
        ),
    )
    assert faults.latency_of("GET", "svms") == 0.3
    assert faults.latency_of("GET", "key_managers") == 0.1
    assert faults.latency_of("POST", "key_servers") == 2.0
    assert faults.latency_of("DELETE", "key_server") == 2.0
    assert faults.latency_of("PATCH", "key_server") == 2.0
    assert faults.latency_of("POST", "restore") == 0.5
    assert faults.latency_of("DELETE", "key_id") == 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "PUT", "route": "*", "seconds": 1.0},
        {"method": "GET", "route": "key-servers", "seconds": 1.0},
        {"method": "*", "route": "*", "seconds": -1.0},
        {"method": "*", "route": "*", "seconds": float("nan")},
    ],
)
def test_impossible_route_latencies_are_refused(bad: dict[str, object]) -> None:
    """A method or resource the simulator never answers, or a bad duration, is a ValueError."""
    with pytest.raises(ValueError):
        RouteLatency(**bad)  # type: ignore[arg-type]


async def test_write_latency_delays_key_server_posts_and_not_gets(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """With slow writes, GETs answer within a short timeout and a key-server POST does not."""
    faults = Faults(route_latency=write_latency(SLOW))
    fleet = await start_fleet(dataclasses.replace(SPEC, faults=faults))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    assert (await client.get(KMS, seconds=2.0)).status == 200
    assert (await client.get(f"{KMS}/{km.uuid}/key-servers", seconds=2.0)).status == 200
    with pytest.raises(TimeoutError):
        await client.post(
            f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"}, seconds=0.3
        )
    assert fleet.requests("sim-0000")["POST", f"{KMS}/{{uuid}}/key-servers"] == 1


async def test_a_slow_get_leaves_posts_fast(
    start_fleet: StartFleet, session: aiohttp.ClientSession
) -> None:
    """A route latency on one GET slows that GET only; the POST answers at once."""
    slow_get = RouteLatency(method="GET", route="key_managers", seconds=SLOW)
    fleet = await start_fleet(dataclasses.replace(SPEC, faults=Faults(route_latency=(slow_get,))))
    client = Client(session, fleet, "sim-0000")
    km = key_manager(client.cluster)
    with pytest.raises(TimeoutError):
        await client.get(KMS, seconds=0.3)
    answer = await client.post(
        f"{KMS}/{km.uuid}/key-servers", {"server": "kms-a.example.com"}, seconds=2.0
    )
    assert answer.status == 201
    assert set(km.servers) == {"kms-a.example.com:5696"}


def test_simulate_options_build_route_latencies_in_precedence_order() -> None:
    """``--route-latency`` first, then ``--write-latency``, then ``--post-latency``."""
    argv = [
        "--latency", "100", "--post-latency", "500", "--write-latency", "2000",
        "--route-latency", "get:svms=300", "--route-latency", "*:*=7",
    ]  # fmt: skip
    faults = _cli._setup(_cli._parser().parse_args(argv)).spec.faults
    assert faults.latency == 0.1
    assert faults.route_latency == (
        RouteLatency(method="GET", route="svms", seconds=0.3),
        RouteLatency(method="*", route="*", seconds=0.007),
        *write_latency(2.0),
        RouteLatency(method="POST", route="*", seconds=0.5),
    )


def test_simulate_without_latency_options_keeps_the_default_faults() -> None:
    """No latency option: the fleet's faults are the defaults, as before route latencies."""
    spec = _cli._setup(_cli._parser().parse_args(["--clusters", "2"])).spec
    assert spec.faults == Faults()


@pytest.mark.parametrize(
    "argv",
    [
        ["--post-latency", "-1"],
        ["--write-latency", "slow"],
        ["--route-latency", "GET=100"],
        ["--route-latency", "GET:svms"],
        ["--route-latency", "PUT:svms=100"],
        ["--route-latency", "GET:volumes=100"],
    ],
)
def test_bad_latency_option_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """A malformed latency option is refused in one line, exit 2."""
    assert _cli.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bulkkm simulate: error: ")
