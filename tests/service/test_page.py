"""The web page in a real headless Chromium (the OS's, driven by Playwright; nothing downloads
a browser): sign in, start an apply, approve its plan, watch the grid fill, find the failure.

Skipped where Chromium or Playwright is absent. With ``BULKKM_SCREENSHOTS=DIR`` each screen
is also saved to DIR (``make screenshots`` refreshes docs/screenshots/).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bulkkm.simulator import Faults
from tests.engine.conftest import fleet_spec
from tests.service.conftest import DONE, harness

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = Path("/usr/bin/chromium")
# The flags known to work here: no sandbox as root, and no background connections, which
# this machine's closed network would refuse, many at a time.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt-get install chromium)"
)


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    """A fresh page in the OS's headless Chromium."""
    async with playwright.async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=FLAGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            yield await context.new_page()
        finally:
            await browser.close()


async def shoot(page: Page, folder: Path, name: str) -> None:
    """A screenshot of the whole page, kept with the test (and in BULKKM_SCREENSHOTS)."""
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    wanted = os.environ.get("BULKKM_SCREENSHOTS")
    if wanted:
        await asyncio.to_thread(_keep, path, Path(wanted))


def _keep(path: Path, folder: Path) -> None:
    """Copy a screenshot to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, folder / path.name)


async def test_sign_in_plan_approve_watch_the_grid_and_find_the_failure(
    tmp_path: Path, page: Page
) -> None:
    """The page's whole path: token once, apply, plan reviewed and approved, grid, failure."""
    expect = playwright.expect
    shots = tmp_path / "shots"
    shots.mkdir()
    spec = fleet_spec(clusters=24, svms=2, initial_servers=0, seed=5)
    async with harness(tmp_path, spec) as h:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(h.service.url + "/")

        await expect(page.get_by_role("heading", name="Sign in to bulkkm")).to_be_visible()
        await page.get_by_label("API token").fill("bkm_not-a-token")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("refused")
        await page.get_by_label("API token").fill(h.tokens["admin"])
        await shoot(page, shots, "login")
        await page.get_by_role("button", name="Sign in").click()

        await expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()
        await page.get_by_label("Command").select_option("apply")
        await page.get_by_role("button", name="Start").click()

        approve = page.get_by_role("button", name="Approve")
        await expect(approve).to_be_visible(timeout=20_000)
        run_id = page.url.rsplit("/", 1)[1]
        run = await h.admin.run(run_id)
        assert run["state"] == "awaiting_approval"
        await expect(page.locator("#plan-hash")).to_have_text(run["plan_hash"])
        await expect(page.locator("#plan-table tbody tr").first).to_contain_text("sim-0000")
        await page.get_by_label("Comment").fill("CHG-1234")
        await shoot(page, shots, "approve")
        h.fleet.set_faults("sim-0007", Faults(dead=True))  # its port closes before the apply
        await approve.click()

        finished = await h.admin.until(run_id, *DONE, deadline=30)
        assert finished["approved_by"] == "admin-bot"
        assert finished["approval_comment"] == "CHG-1234"
        assert finished["state"] == "failed"  # one cluster cannot be reached
        added = finished["counts"]["added"]
        counts = page.get_by_role("list", name="Outcomes so far")
        await expect(counts).to_contain_text(f"added {added}", timeout=10_000)
        await expect(counts).to_contain_text("clusters unreachable 1")
        await expect(page.locator("h1 .state")).to_have_text("failed")
        # The grid drew a row per cluster: the canvas's pixels at the first row's "added" cell
        # carry that outcome's colour.
        colour = await page.evaluate(
            """() => {
                const c = document.querySelector('#grid canvas');
                const r = window.devicePixelRatio || 1;
                const d = c.getContext('2d').getImageData((190 + 20) * r, (22 + 11) * r, 1, 1);
                return Array.from(d.data.slice(0, 3));
            }"""
        )
        assert colour == [0x1A, 0x7F, 0x37], colour
        await shoot(page, shots, "run")

        await page.get_by_label("failed only").check()
        failing = page.get_by_role("list", name="Clusters with errors")
        await expect(failing.get_by_role("listitem")).to_have_count(1)
        await failing.get_by_role("button", name="sim-0007").click()
        await expect(page.locator("h3")).to_have_text("sim-0007")
        await shoot(page, shots, "failure")

        await page.get_by_role("link", name="Compliance").click()
        await expect(page.get_by_role("heading", name="Compliance")).to_be_visible()
        await expect(page.get_by_role("list", name="Key managers by state")).to_contain_text(
            "compliant"
        )
        await shoot(page, shots, "compliance")

        await page.get_by_role("link", name="Schedules").click()
        await page.get_by_label("Cron").fill("0 3 * * *")
        await page.get_by_label("Time zone").fill("Europe/Paris")
        await page.get_by_role("button", name="Create").click()
        await expect(page.locator("tbody tr")).to_have_count(1)
        await expect(page.locator("tbody tr ol li")).to_have_count(5)
        await shoot(page, shots, "schedules")

        await page.get_by_role("link", name="Runs").click()
        await expect(page.locator("tbody tr")).to_have_count(1)
        await shoot(page, shots, "runs")
        assert errors == []
