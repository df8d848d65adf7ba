"""The service as an operator (and an attacker) meets it from the outside: real HTTP, the
simulator over real sockets, what a person reading the API or the page would check."""

from __future__ import annotations

from pathlib import Path

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
