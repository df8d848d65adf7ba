"""A 429's Retry-After is waited, end to end: bulkkm against the simulator over real TLS.

Measured from the simulator's request log (when each request reached the cluster), never
from wall-clock totals: the request after a throttled POST comes at least Retry-After later.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bulkkm.events import Event, Outcome, Retrying
from bulkkm.simulator import Faults, SimulatedFleet
from tests.engine.conftest import fleet_spec, inventory_for, run_rollout

RETRY_AFTER = 1
THROTTLED = 2
"""POSTs answered 429 before the fault is lifted."""


async def test_a_429s_retry_after_is_waited_before_the_next_request(tmp_path: Path) -> None:
    """Two POSTs throttled with `Retry-After: 1`: each next request comes >= 1 s later."""
    throttle = Faults(throttle_rate=1.0, throttle_retry_after=RETRY_AFTER)
    spec = fleet_spec(
        clusters=1,
        svms=1,
        seed=5,
        initial_servers=0,
        external_ratio=1.0,
        onboard_ratio=0.0,
        faults=throttle,
    )
    async with asyncio.timeout(60), SimulatedFleet(spec) as fleet:
        (cluster,) = fleet.clusters
        retries: list[Retrying] = []

        def lift_after_two(event: Event) -> None:
            """Let the third POST through (the run goes on retrying until then)."""
            if isinstance(event, Retrying):
                retries.append(event)
                if len(retries) == THROTTLED:
                    fleet.set_faults(cluster.name, Faults())

        # One request at a time: the request after a POST is its batch's next step.
        inventory = inventory_for(
            fleet, tmp_path, cluster_scope=False, extra_defaults={"limits": {"concurrency": 1}}
        )
        result = await run_rollout(fleet, inventory, tmp_path, extra=[lift_after_two])

    assert {t["outcome"] for t in result.targets()} == {Outcome.ADDED.value}
    assert [(r.attempt, r.wait, r.error.http_status) for r in retries] == [
        (1, RETRY_AFTER, 429),
        (2, RETRY_AFTER, 429),
    ]
    log = [r for r in fleet.request_log if r.cluster == cluster.name]
    posts = [i for i, r in enumerate(log) if r.method == "POST"]
    assert len(posts) == THROTTLED + 1
    resolution = time.get_clock_info("monotonic").resolution
    for i in posts[:THROTTLED]:
        after = log[i + 1]
        assert (after.method, after.path) == ("GET", log[i].path)  # the read-back comes first
        assert after.at - log[i].at >= RETRY_AFTER - resolution
