"""End-to-end fixtures: bulkkm against the simulator over real sockets, TLS verified."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from bulkkm import engine
from bulkkm.events import Event, RunFinished, Subscriber
from bulkkm.inventory import Inventory, load_inventory
from bulkkm.report import ReportWriter
from bulkkm.retry import RetryPolicy
from bulkkm.simulator import FleetSpec, SimulatedFleet
from tests.invariants import check_invariants

FAST = RetryPolicy(attempts=8, timeout=30.0, wait_initial=0.005, wait_max=0.02, wait_jitter=0.005)
"""Real retries with short sleeps, so tests run quickly and still exercise backoff."""
NEW_SERVERS = ("kms-new.example.com", "kms-dr.example.com:5697")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """What a user can inspect after a run."""

    summary: RunFinished
    lines: list[dict[str, Any]]
    events: list[Event]
    before: Mapping[str, object]
    after: Mapping[str, object]

    def targets(self) -> list[dict[str, Any]]:
        """The target lines."""
        return [line for line in self.lines if line["type"] == "target"]


def inventory_for(fleet: SimulatedFleet, tmp_path: Path, **kwargs: object) -> Inventory:
    """The fleet's inventory (simulator-written, as a user would get it), loaded."""
    kwargs.setdefault("key_servers", NEW_SERVERS)
    path = fleet.write_inventory(tmp_path / "fleet.yaml", **kwargs)  # type: ignore[arg-type]
    return load_inventory(path)


async def run_rollout(
    fleet: SimulatedFleet,
    inventory: Inventory,
    tmp_path: Path,
    *,
    check: bool = True,
    name: str = "report.jsonl",
    extra: Sequence[Subscriber] = (),
    **options: Any,
) -> Rollout:
    """Run the engine with a report; check every invariant unless told not to."""
    options.setdefault("retry", FAST)
    before = fleet.state()
    writes_before = len(fleet.write_log)
    report = tmp_path / name
    writer = ReportWriter.create(report, overwrite=True)
    events: list[Event] = []
    try:
        summary = await engine.run(
            inventory, engine.Options(**options), [writer, events.append, *extra]
        )
    finally:
        writer.close()
    lines = [orjson.loads(line) for line in report.read_bytes().splitlines()]
    after = fleet.state()
    if check:
        check_invariants(
            inventory=inventory,
            before=before,
            after=after,
            writes=fleet.write_log[writes_before:],
            report=lines,
        )
    return Rollout(summary=summary, lines=lines, events=events, before=before, after=after)


def fleet_spec(**kwargs: object) -> FleetSpec:
    """A fleet whose cluster-scoped key managers are all external (so none is blocked)."""
    kwargs.setdefault("cluster_external_ratio", 1.0)
    return FleetSpec(**kwargs)  # type: ignore[arg-type]
