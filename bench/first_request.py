"""Time to first request: from ``bulkkm apply``'s process start to the first request a cluster sees.

The fleet is simulated in this process: its request log stamps each request on arrival
with ``time.monotonic()``, the machine-wide clock this process reads just before starting
``bulkkm apply`` as a process of its own. Once the fleet has seen a request, the apply is
interrupted (SIGINT, as Ctrl-C) and waited for. With ``planned``, apply runs ``--plan`` on a
saved plan that adds a server on that many clusters (the first ones), made from the
simulated fleet's own state, so it is the plan ``bulkkm plan --out`` would write.

Run alone: ``.venv/bin/python -m bench.first_request --clusters 10000 --planned 5000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import orjson

from bench.fleet import DESIRED_SERVER
from bulkkm.planfile import FORMAT, PlannedCluster, PlannedKeyManager, SavedPlan
from bulkkm.report import timestamp
from bulkkm.simulator import FleetSpec, Mode, SimulatedFleet

__all__ = ["FirstRequest", "time_to_first_request"]

SVMS: Final = 2
"""Data SVMs per cluster: few, so that the fleet starts quickly; the client's start-up
depends on the clusters and the plan, not on what discovery later finds."""
FIRST_REQUEST_TIMEOUT: Final = 120.0
STOP_TIMEOUT: Final = 30.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FirstRequest:
    """One ``bulkkm apply`` start: seconds from its process start to the fleet's first request."""

    clusters: int
    planned: int | None
    seconds: float
    exit_code: int | None


def _spec(clusters: int) -> FleetSpec:
    """A clean fleet: every key manager external, with no server, room for one more."""
    return FleetSpec(
        clusters=clusters,
        svms=SVMS,
        external_ratio=1.0,
        onboard_ratio=0.0,
        cluster_external_ratio=1.0,
        initial_servers=0,
        headroom=1,
    )


def _write_plan(fleet: SimulatedFleet, inventory: Path, planned: int, out: Path) -> None:
    """A saved plan adding ``DESIRED_SERVER`` to every SVM key manager of the first clusters."""
    server = DESIRED_SERVER
    clusters = []
    for cluster in fleet.clusters[:planned]:
        kms = [
            PlannedKeyManager(
                uuid=km.uuid,
                svm=km.svm.name,
                servers_present=tuple(sorted(km.servers)),
                add=(server,),
            )
            for km in cluster.key_managers.values()
            if km.svm is not None and km.mode is Mode.EXTERNAL
        ]
        clusters.append(
            PlannedCluster(
                name=cluster.name,
                version=cluster.version,
                window=None,
                next_window=None,
                key_managers=tuple(kms),
            )
        )
    plan = SavedPlan(
        plan_id=str(uuid.uuid4()),
        created_at=timestamp(datetime.now(UTC)),
        inventory=inventory.resolve(),
        inventory_sha256=hashlib.sha256(inventory.read_bytes()).hexdigest(),
        clusters=tuple(clusters),
    )
    body = {"format": FORMAT, **dataclasses.asdict(plan), "inventory": str(plan.inventory)}
    out.write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")


async def _first_request(
    fleet: SimulatedFleet, inventory: Path, directory: Path, *, planned: int | None, run: int
) -> FirstRequest:
    """Start one ``bulkkm apply``; wait for the fleet's first request; interrupt it."""
    command = [sys.executable, "-m", "bulkkm", "apply"]
    if planned is None:
        command.append(str(inventory))
    else:
        plan = directory / f"plan-{run}.json"
        _write_plan(fleet, inventory, planned, plan)
        command += ["--plan", str(plan)]
    name = f"{'plain' if planned is None else 'plan'}-{run}"
    command += ["--report", str(directory / f"report-{name}.jsonl"), "-q", "--log-format", "json"]
    seen = len(fleet.request_log)
    log = (directory / f"apply-{name}.log").open("wb")
    with log:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log, stderr=log, env=_installed(directory)
        )
        try:
            deadline = started + FIRST_REQUEST_TIMEOUT
            while len(fleet.request_log) == seen and process.returncode is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no request within {FIRST_REQUEST_TIMEOUT:g} s")
                await asyncio.sleep(0.005)
            if len(fleet.request_log) == seen:
                raise RuntimeError(f"bulkkm apply exited {process.returncode} before a request")
            first = fleet.request_log[seen].at
        finally:
            await _stop(process)
    return FirstRequest(
        clusters=len(fleet.clusters),
        planned=planned,
        seconds=first - started,
        exit_code=process.returncode,
    )


def _installed(directory: Path) -> dict[str, str]:
    """The environment of a process that runs bulkkm as installed: its bytecode compiled once.

    An installed package ships compiled bytecode; an editable one under
    ``PYTHONDONTWRITEBYTECODE`` would compile every module at every start (~0.1 s here).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(directory / "pycache")
    return env


async def _compile(directory: Path) -> None:
    """Start bulkkm once, so that its bytecode is cached before anything is timed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkkm",
        "--version",
        env=_installed(directory),
        stdout=asyncio.subprocess.DEVNULL,
    )
    await process.wait()


async def _stop(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C, then SIGKILL if the run does not end in time."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


def time_to_first_request(
    clusters: int, planned: int, runs: int, directory: Path
) -> tuple[list[FirstRequest], list[FirstRequest]]:
    """``runs`` plain starts and ``runs`` ``--plan`` starts on one fleet, alternating."""
    directory.mkdir(parents=True)
    return asyncio.run(_measure(clusters, planned, runs, directory))


async def _measure(
    clusters: int, planned: int, runs: int, directory: Path
) -> tuple[list[FirstRequest], list[FirstRequest]]:
    """The measurements of ``time_to_first_request``, in a loop serving the fleet."""
    plain: list[FirstRequest] = []
    with_plan: list[FirstRequest] = []
    await _compile(directory)
    async with SimulatedFleet(_spec(clusters)) as fleet:
        inventory = fleet.write_inventory(
            directory / "fleet.yaml", key_servers=[DESIRED_SERVER], cluster_scope=False
        )
        for run in range(runs):
            plain.append(await _first_request(fleet, inventory, directory, planned=None, run=run))
            with_plan.append(
                await _first_request(fleet, inventory, directory, planned=planned, run=run)
            )
    return plain, with_plan


def main() -> None:
    """Measure, print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--planned", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="a new directory for the files")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        plain, planned = time_to_first_request(
            args.clusters, args.planned, args.runs, work / "first-request"
        )
    for label, runs in (("plain", plain), (f"--plan ({args.planned} planned)", planned)):
        times = [r.seconds for r in runs]
        print(
            f"time to first request, {args.clusters} clusters, {label}: median "
            f"{statistics.median(times):.2f} s of {len(times)} "
            f"({', '.join(f'{t:.2f}' for t in times)})"
        )


if __name__ == "__main__":
    main()
