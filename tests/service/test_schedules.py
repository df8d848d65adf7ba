"""Schedules over real HTTP: fire times (DST included), a check fired by the clock, an apply
waiting for approval or approving itself, a fire missed while the service was down, scopes."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
import stamina

from bulkkm.service import Scope, Service, ServiceConfig
from bulkkm.service._schedules import fire_times
from bulkkm.simulator import SimulatedFleet
from tests.engine.conftest import NEW_SERVERS, fleet_spec
from tests.service.conftest import DONE, Client, Clock, Harness, add_token, harness

PARIS = ZoneInfo("Europe/Paris")


def test_fire_times_follow_the_zone_clock_across_dst() -> None:
    """02:30 Paris: on the spring-forward day it fires at the jump (03:00), in autumn once."""
    spring = fire_times("30 2 * * *", "Europe/Paris", datetime(2026, 3, 28, 12, tzinfo=UTC), 3)
    assert [t.astimezone(PARIS).isoformat() for t in spring] == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    autumn = fire_times("30 2 * * *", "Europe/Paris", datetime(2026, 10, 24, 12, tzinfo=UTC), 2)
    assert [t.isoformat() for t in autumn] == [
        "2026-10-25T00:30:00+00:00",  # 02:30 CEST, the first of the two 02:30s
        "2026-10-26T01:30:00+00:00",  # 02:30 CET
    ]


async def _schedule(client: Client, **body: object) -> Any:
    """POST /schedules on fleet.yaml; the answer."""
    return await client.post("/api/v1/schedules", {"inventory": "fleet.yaml", **body})


async def _fire(h: Harness, schedule: dict[str, Any]) -> dict[str, Any]:
    """Move the clock just past the schedule's next fire, wake the scheduler; its new run."""
    due = datetime.fromisoformat(schedule["next_fires"][0])
    h.clock.offset += due - h.clock() + timedelta(seconds=1)
    h.service.scheduler.poke()
    async with asyncio.timeout(10):
        while True:
            found = (await h.admin.get(f"/api/v1/schedules/{schedule['id']}")).body
            if found["fires"] and found["fires"][0]["fire_at"] == schedule["next_fires"][0]:
                break
            await asyncio.sleep(0.02)
    fire = found["fires"][0]
    assert fire["run_id"] is not None, fire
    assert not fire["missed"]
    return dict(found)


async def test_a_check_schedule_fires_on_the_clock_and_runs_a_check(tmp_path: Path) -> None:
    """03:00 Paris daily: 5 next fire times shown; moving the clock past one runs one check."""
    async with harness(tmp_path, fleet_spec(clusters=2, svms=1, initial_servers=0)) as h:
        created = await _schedule(
            h.clients["operate"], command="check", cron="0 3 * * *", tz="Europe/Paris"
        )
        assert created.status == 201, created.body
        schedule = created.body
        shown = (await h.clients["read"].get(f"/api/v1/schedules/{schedule['id']}")).body
        fires = [datetime.fromisoformat(t) for t in shown["next_fires"]]
        assert len(fires) == 5
        assert {t.astimezone(PARIS).strftime("%H:%M") for t in fires} == {"03:00"}
        gaps = {b - a for a, b in itertools.pairwise(fires)}
        assert gaps <= {timedelta(hours=h) for h in (23, 24, 25)}  # a DST change: 23 or 25
        assert fires[0] > h.clock()

        found = await _fire(h, schedule)
        run = await h.admin.until(found["last_run_id"], *DONE)
        assert run["state"] == "succeeded", run
        assert run["command"] == "check"
        assert run["created_by"] == f"schedule:{schedule['id']}"
        assert found["next_fires"][0] > schedule["next_fires"][0]
        assert found["missed_fires"] == 0
        listed = (await h.clients["read"].get("/api/v1/schedules")).body["schedules"]
        assert [s["id"] for s in listed] == [schedule["id"]]
        runs = (await h.admin.get("/api/v1/runs")).body["runs"]
        assert len(runs) == 1  # one fire, one run


async def test_apply_schedules_wait_for_approval_unless_auto_approved(tmp_path: Path) -> None:
    """Without auto_approve the run waits; with it (admin only) the run approves its own plan."""
    async with harness(tmp_path, fleet_spec(clusters=2, svms=1, initial_servers=0)) as h:
        manual = (
            await _schedule(h.clients["operate"], command="apply", cron="0 * * * *", tz="UTC")
        ).body
        for who in ("operate", "approve", "read"):
            refused = await _schedule(
                h.clients[who], command="apply", cron="30 * * * *", auto_approve=True
            )
            assert refused.status == 403, (who, refused.body)
        found = await _fire(h, manual)
        waiting = await h.admin.until(found["last_run_id"], "awaiting_approval")
        assert waiting["approved_by"] is None
        assert waiting["auto_approve"] is False
        discard = await h.admin.post(f"/api/v1/runs/{waiting['id']}/discard")
        assert discard.status == 200

        auto = await _schedule(h.admin, command="apply", cron="30 * * * *", auto_approve=True)
        assert auto.status == 201, auto.body
        found = await _fire(h, auto.body)
        run = await h.admin.until(found["last_run_id"], *DONE)
        assert run["state"] == "succeeded", run
        assert run["approved_by"] == f"schedule:{auto.body['id']}"
        assert run["plan_hash"] is not None
        assert run["counts"].get("added", 0) > 0
        compliance = (await h.admin.get("/api/v1/compliance")).body
        assert compliance["totals"]["compliant"] == len(compliance["key_managers"]) > 0


async def test_bad_schedules_are_refused_and_a_deleted_one_is_gone(tmp_path: Path) -> None:
    """Cron, zone, command, inventory and auto_approve on a check: 400; delete: 204 then 404."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1)) as h:
        cases: list[tuple[dict[str, object], str]] = [
            ({"command": "check", "cron": "61 * * * *"}, "cron"),
            ({"command": "check", "cron": "* * * *"}, "five fields"),
            ({"command": "check", "cron": "0 3 * * *", "tz": "Mars/Olympus"}, "tz"),
            ({"command": "plan", "cron": "0 3 * * *"}, "command"),
            ({"command": "check", "cron": "0 3 * * *", "auto_approve": True}, "auto_approve"),
            ({"command": "check", "cron": "0 3 * * *", "auto_approve": "yes"}, "auto_approve"),
            ({"command": "check", "cron": "0 3 * * *", "inventory": "nope.yaml"}, "nope.yaml"),
            ({"command": "check", "cron": "0 3 * * *", "colour": "red"}, "colour"),
        ]
        for body, needle in cases:
            answer = await _schedule(h.admin, **body)
            assert answer.status == 400, (body, answer.body)
            assert needle in answer.body["error"], (body, answer.body)
        created = (await _schedule(h.clients["operate"], command="check", cron="0 3 * * 1")).body
        path = f"/api/v1/schedules/{created['id']}"
        assert (await h.clients["read"].call("DELETE", path)).status == 403
        assert (await h.clients["operate"].call("DELETE", path)).status == 204
        assert (await h.clients["operate"].call("DELETE", path)).status == 404
        assert (await h.admin.get(path)).status == 404
        assert (await h.anonymous.get("/api/v1/schedules")).status == 401


async def test_a_fire_missed_while_down_is_recorded_and_run_once_at_start(tmp_path: Path) -> None:
    """Down for three fire times: at start-up one run, three missed fires recorded."""
    data, folder = tmp_path / "data", tmp_path / "inventories"
    folder.mkdir()
    clock = Clock()
    async with SimulatedFleet(fleet_spec(clusters=2, svms=1, initial_servers=0)) as fleet:
        fleet.write_inventory(folder / "fleet.yaml", key_servers=NEW_SERVERS)
        token = await add_token(data, "ops", Scope.ADMIN)
        config = ServiceConfig(data=data, port=0, inventories=folder, clock=clock)
        with stamina.set_testing(True, attempts=3):
            async with Service(config) as service, aiohttp.ClientSession() as session:
                api = Client(session, service.url, token)
                schedule = (await _schedule(api, command="check", cron="0 3 * * *")).body
            first = datetime.fromisoformat(schedule["next_fires"][0])
            clock.offset += first - clock() + timedelta(days=2, hours=1)
            async with Service(config) as service, aiohttp.ClientSession() as session:
                api = Client(session, service.url, token)
                found = (await api.get(f"/api/v1/schedules/{schedule['id']}")).body
                assert found["missed_fires"] == 3, found
                assert found["last_missed_at"] == schedule["next_fires"][2]
                assert [f["missed"] for f in found["fires"]] == [True]
                assert datetime.fromisoformat(found["next_fires"][0]) > clock()
                runs = (await api.get("/api/v1/runs")).body["runs"]
                assert [r["id"] for r in runs] == [found["last_run_id"]]
                run = await api.until(found["last_run_id"], *DONE)
                assert run["state"] == "succeeded", run
                metrics = (await api.get("/metrics")).raw.decode()
                assert 'bulkkm_schedule_fires_total{missed="true"} 1.0' in metrics


@pytest.mark.parametrize("scope", ["operate", "admin"])
async def test_who_may_create_a_plain_schedule(tmp_path: Path, scope: str) -> None:
    """operate and admin create a schedule without auto_approve; its creator is recorded."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1)) as h:
        answer = await _schedule(h.clients[scope], command="migrate", cron="15 4 * * 6")
        assert answer.status == 201, answer.body
        assert answer.body["created_by"] == f"{scope}-bot"
        assert answer.headers["Location"] == f"/api/v1/schedules/{answer.body['id']}"
