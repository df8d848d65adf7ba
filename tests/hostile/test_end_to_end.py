"""Hostile clusters inside a fleet, through the whole engine: each ends as a line of the report,
and the healthy clusters beside it complete as if it were not there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web

from bulkkm import engine
from bulkkm.events import Event, Retrying
from bulkkm.inventory import load_inventory
from bulkkm.report import ReportWriter
from bulkkm.retry import RetryPolicy
from bulkkm.simulator import SimulatedFleet
from tests.engine.conftest import fleet_spec
from tests.hostile._server import (
    CLUSTER_KM,
    HAL,
    KM_PATH,
    HostileServer,
    Pki,
    json_answer,
    svm_km,
)
from tests.invariants import check_invariants, check_report, outcomes

SHORT = RetryPolicy(attempts=3, timeout=10.0, wait_initial=0.005, wait_max=0.02, wait_jitter=0.0)
KS_PATHS = (f"{KM_PATH}/{CLUSTER_KM}/key-servers", f"{KM_PATH}/{svm_km(1)}/key-servers")


@pytest.fixture
async def fleet() -> AsyncIterator[SimulatedFleet]:
    """Two well-behaved simulated clusters beside the hostile one."""
    async with SimulatedFleet(fleet_spec(clusters=2, svms=2, seed=4, initial_servers=0)) as f:
        yield f


async def run_mixed(
    fleet: SimulatedFleet,
    hostile: HostileServer,
    pki: Pki,
    tmp_path: Path,
    *,
    concurrency: int = 4,
) -> tuple[list[dict[str, Any]], list[Event]]:
    """Apply to the fleet plus ``hostile``; check the healthy clusters' invariants; the report."""
    path = fleet.write_inventory(
        tmp_path / "fleet.yaml", extra_defaults={"limits": {"timeout": 0.5}}
    )
    document = yaml.safe_load(path.read_text())
    document["clusters"].append(
        {
            "name": "hostile",
            "address": hostile.address,
            "svms": "all",
            "cluster_scope": True,
            "tls": {"ca_file": str(pki.ca_file)},
            "limits": {"concurrency": concurrency},
        }
    )
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    inventory = load_inventory(path)
    before = fleet.state()
    report = tmp_path / "report.jsonl"
    writer = ReportWriter.create(report, overwrite=True)
    events: list[Event] = []
    try:
        async with asyncio.timeout(60):
            await engine.run(inventory, engine.Options(retry=SHORT), [writer, events.append])
    finally:
        writer.close()
    lines = [orjson.loads(line) for line in report.read_bytes().splitlines()]
    check_report(lines)
    healthy = [line for line in lines if line.get("cluster") != "hostile"]
    check_invariants(
        inventory=inventory.filter(("sim-*",)),
        before=before,
        after=fleet.state(),
        writes=fleet.write_log,
        report=[line for line in healthy if line["type"] != "summary"],
    )
    assert set(outcomes(healthy)) <= {"added", "present"}
    return lines, events


def hostile_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's lines about the hostile cluster."""
    return [line for line in lines if line.get("cluster") == "hostile"]


async def test_malformed_discovery_fails_that_cluster_only(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """Malformed JSON from key-manager discovery: one failed cluster line, permanent."""
    server.answer("GET", KM_PATH, 200, b'{"records": [{"uuid": ')
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    (line,) = hostile_lines(lines)
    assert line["type"] == "cluster"
    assert line["outcome"] == "failed"
    assert line["error"]["category"] == "permanent"
    assert "malformed JSON" in line["error"]["message"]
    assert lines[-1]["exit_code"] == 1


async def test_redirecting_cluster_fails_and_the_target_host_is_never_asked(
    fleet: SimulatedFleet,
    server: HostileServer,
    elsewhere: HostileServer,
    pki: Pki,
    tmp_path: Path,
) -> None:
    """A cluster redirecting discovery elsewhere fails; the other host gets no request."""
    location = {"Location": f"https://{elsewhere.address}/api/cluster"}
    server.answer("GET", "/api/cluster", 302, {}, headers=location)
    server.answer("GET", KM_PATH, 302, {}, headers=location)
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    (line,) = hostile_lines(lines)
    assert (line["type"], line["outcome"]) == ("cluster", "failed")
    assert "redirect" in line["error"]["message"]
    assert elsewhere.seen == []


async def test_cluster_with_a_certificate_for_another_name_fails_as_tls_untried(
    fleet: SimulatedFleet, pki: Pki, tmp_path: Path
) -> None:
    """A certificate for the wrong name: a `tls` cluster line, no retry, nothing received."""
    async with HostileServer(pki.context("wrong.example.org")) as server:
        lines, events = await run_mixed(fleet, server, pki, tmp_path)
    (line,) = hostile_lines(lines)
    assert (line["type"], line["outcome"]) == ("cluster", "failed")
    assert line["error"]["category"] == "tls"
    assert server.seen == []
    assert not [e for e in events if isinstance(e, Retrying) and e.cluster == "hostile"]


async def test_post_answered_200_is_reported_added(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """200 where 201 was expected: every target of the cluster is `added`, one POST each."""
    for path in KS_PATHS:
        server.answer("POST", path, 200, {})
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    assert set(outcomes(hostile_lines(lines))) == {"added"}
    assert sum(1 for s in server.seen if s.method == "POST") == len(KS_PATHS)


async def test_post_error_without_code_fails_its_targets_once(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """A 400 without an ONTAP code: `failed`, permanent, after one attempt, code null."""
    for path in KS_PATHS:
        server.answer("POST", path, 400, {"error": {"message": "refused, no code"}})
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    targets = hostile_lines(lines)
    assert targets
    for t in targets:
        assert (t["outcome"], t["attempts"]) == ("failed", 1)
        assert t["error"] == {
            "category": "permanent",
            "code": None,
            "http_status": 400,
            "message": "refused, no code",
        }


async def test_post_whose_answer_never_ends_fails_as_timeout_after_a_read_back(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """An answer trickling forever: each POST times out, is read back, and the target fails."""

    async def trickle(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": HAL}, status=201)
        await response.prepare(request)
        try:
            while not server.closing.is_set():
                await response.write(b" ")
                await asyncio.sleep(0.02)
        except (ConnectionError, RuntimeError):
            pass
        return response

    for path in KS_PATHS:
        server.on("POST", path, trickle)
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    targets = hostile_lines(lines)
    assert {t["outcome"] for t in targets} == {"failed"}
    assert {t["error"]["category"] for t in targets} == {"timeout"}
    posts = [s for s in server.seen if s.method == "POST"]
    reads = [s for s in server.seen if s.method == "GET" and s.path.startswith(KS_PATHS)]
    assert len(posts) == len(KS_PATHS) * SHORT.attempts
    # Every POST after the first of its key manager was preceded by a read-back.
    assert len(reads) >= len(posts) - len(KS_PATHS)


async def test_malformed_records_fail_that_cluster_not_the_run(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """Records that are not objects fail the hostile cluster; the run and the rest go on."""
    server.answer("GET", KM_PATH, 200, {"records": [1, "two"]})
    lines, _ = await run_mixed(fleet, server, pki, tmp_path)
    (line,) = hostile_lines(lines)
    assert (line["type"], line["outcome"]) == ("cluster", "failed")
    assert line["error"]["category"] == "permanent"


async def test_discovery_retry_never_overlaps_an_abandoned_request(
    fleet: SimulatedFleet, server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """A failed discovery call never leaves its sibling running beside the retry."""
    calls = [0]
    sibling_in_flight = asyncio.Event()

    async def flaky_version(_request: web.BaseRequest) -> web.StreamResponse:
        calls[0] += 1
        if calls[0] == 1:
            async with asyncio.timeout(10):
                await sibling_in_flight.wait()  # fail only once the other call has arrived
            return json_answer(500, {"error": {"message": "busy", "code": "13"}})
        await asyncio.sleep(0.1)
        return json_answer(200, {"version": {"generation": 9, "major": 14, "minor": 1}})

    async def slow_key_managers(_request: web.BaseRequest) -> web.StreamResponse:
        sibling_in_flight.set()
        await asyncio.sleep(0.3)  # ONTAP goes on with a GET whose client has left
        return json_answer(200, {"records": server.key_managers})

    server.on("GET", "/api/cluster", flaky_version)
    server.on("GET", KM_PATH, slow_key_managers)
    lines, _ = await run_mixed(fleet, server, pki, tmp_path, concurrency=2)
    assert set(outcomes(hostile_lines(lines))) == {"added"}
    assert calls[0] >= 2  # the failed discovery was retried
    assert server.peak <= 2, f"{server.peak} requests in flight with concurrency 2"
