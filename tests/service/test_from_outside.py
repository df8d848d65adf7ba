"""The service as an operator (and an attacker) meets it from the outside: real HTTP, the
simulator over real sockets, what a person reading the API or the page would check."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bulkkm.simulator import Faults
from tests.engine.conftest import fleet_spec
from tests.service.conftest import DONE, harness


async def test_an_apply_whose_plan_left_clusters_and_targets_out_does_not_end_succeeded(
    tmp_path: Path,
) -> None:
    """A cluster the plan could not reach, targets it blocked: the approved apply ends failed.

    The approved change leaves them alone (it executes exactly the plan), so the execution's
    own report is clean; the run as a whole still did not do the job, as ``bulkkm apply``
    (exit 1) would say.
    """
    spec = fleet_spec(clusters=3, svms=2, initial_servers=0, cluster_external_ratio=0.0)
    async with harness(tmp_path, spec) as h:
        h.fleet.set_faults("sim-0002", Faults(dead=True))
        run = await h.clients["operate"].start("apply")
        run = await h.admin.until(run["id"], "awaiting_approval")
        assert run["clusters_failed"] == 1
        blocked = run["counts"]["blocked"]
        assert blocked > 0
        ok = await h.clients["approve"].post(
            f"/api/v1/runs/{run['id']}/approve", {"plan_hash": run["plan_hash"]}
        )
        assert ok.status == 202, ok.body
        done = await h.admin.until(run["id"], *DONE)
        assert done["counts"]["added"] > 0
        assert done["state"] == "failed", done
        assert done["exit_code"] == 1
        assert done["clusters_failed"] == 1
        assert done["counts"]["blocked"] == blocked
        assert "1 cluster" in done["message"]
        assert f"{blocked} target" in done["message"]
        listed = (await h.clients["read"].get("/api/v1/runs?state=failed")).body["runs"]
        assert [r["id"] for r in listed] == [run["id"]]


CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium")
async def test_the_approve_screen_says_which_clusters_the_plan_does_not_cover(
    tmp_path: Path,
) -> None:
    """A plan with an undiscovered cluster: the change board reads so before it approves."""
    driver = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
    async with harness(tmp_path, fleet_spec(clusters=3, svms=1, initial_servers=0)) as h:
        h.fleet.set_faults("sim-0001", Faults(dead=True))
        run = await h.clients["operate"].start("apply")
        await h.admin.until(run["id"], "awaiting_approval")
        async with driver.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=FLAGS
            )
            try:
                page = await browser.new_page()
                await page.goto(h.service.url + "/")
                await page.get_by_label("API token").fill(h.tokens["approve"])
                await page.get_by_role("button", name="Sign in").click()
                runs = page.get_by_role("heading", name="Runs", exact=True)
                await driver.expect(runs).to_be_visible()
                await page.goto(f"{h.service.url}/#/runs/{run['id']}")
                await driver.expect(page.locator("#plan-hash")).to_be_visible(timeout=10_000)
                warning = page.locator("#plan-incomplete")
                await driver.expect(warning).to_contain_text("1 cluster(s) could not be discovered")
                await driver.expect(warning).to_contain_text("sim-0001")
                await driver.expect(page.locator(".approve")).to_contain_text(
                    "4 key managers change on 2 clusters"
                )
            finally:
                await browser.close()


async def test_a_fire_is_shown_only_once_its_schedule_names_the_run(tmp_path: Path) -> None:
    """GET /schedules/{id} never lists a fire with a run while last_run_id is still empty."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1, initial_servers=0)) as h:
        created = await h.clients["operate"].post(
            "/api/v1/schedules",
            {"inventory": "fleet.yaml", "command": "check", "cron": "0 3 * * *"},
        )
        assert created.status == 201, created.body
        schedule = created.body
        seen: list[tuple[object, object]] = []
        db = h.service.scheduler._db  # the API read at the moment the fire is written
        add_fire = db.add_fire

        async def add_fire_seen(fire: Any) -> None:
            await add_fire(fire)
            shown = (await h.clients["read"].get(f"/api/v1/schedules/{schedule['id']}")).body
            seen.append((shown["fires"][0]["run_id"], shown["last_run_id"]))

        db.add_fire = add_fire_seen  # type: ignore[method-assign]
        due = datetime.fromisoformat(schedule["next_fires"][0])
        h.clock.offset += due - h.clock() + timedelta(seconds=1)
        fired = await h.service.scheduler.run_due()
        assert len(fired) == 1
        assert fired[0].run_id is not None
        assert seen == [(fired[0].run_id, fired[0].run_id)]
        await h.admin.until(fired[0].run_id, *DONE)


async def test_options_that_are_not_an_object_are_refused(tmp_path: Path) -> None:
    """``"options": []`` (or "" or 0) is a 400 naming options, not a run started without them."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1, initial_servers=0)) as h:
        wrongs: tuple[object, ...] = ([], "", 0, False)
        for wrong in wrongs:
            answer = await h.clients["operate"].post(
                "/api/v1/runs", {"inventory": "fleet.yaml", "command": "check", "options": wrong}
            )
            assert answer.status == 400, (wrong, answer.body)
            assert answer.body["error"].startswith("options:")
        assert (await h.admin.get("/api/v1/runs")).body["runs"] == []
