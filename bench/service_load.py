"""The service under load: 50 SSE clients on one run of 1,000 x 20 while API calls go on.

One simulated fleet (``bulkkm simulate``, its own process) and one ``bulkkm serve`` (its own
process); this process is the clients. The same ``check`` of the whole fleet runs three
times, one after the other (a check writes nothing, so each run meets the same fleet):

- ``quiet``: no client but the one that starts the run and waits for its end;
- ``api``: API calls go on (GET a run, the runs list, the schedules, ``/healthz``,
  ``/metrics``), one after another from ``--api-clients`` clients, during the whole run;
- ``api+sse``: the same API calls, and ``--sse-clients`` event streams of the run, each
  read to its end (every client must receive every event).

Reported per row: the run's makespan (``finished_at - started_at`` as the service recorded
them), the API calls' count and latency percentiles (p50, p99, max), the events each
stream received and the seconds the slowest stream took past the run's end. It prints a
Markdown table; ``--json FILE`` writes the figures.

    .venv/bin/python -m bench.service_load                 # 1,000 x 20, 50 streams
    .venv/bin/python -m bench.service_load --clusters 50 --svms 4 --sse-clients 5  # seconds
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp

from bench.fleet import FleetShape, running_fleet
from bulkkm.service import Scope, create_token

DONE = {"succeeded", "failed", "stopped", "cancelled", "interrupted"}
API_PATHS = ("/api/v1/runs/{id}", "/api/v1/runs?limit=20", "/api/v1/schedules", "/healthz")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One scenario's figures."""

    scenario: str
    makespan_s: float
    targets: int
    api_calls: int
    api_p50_ms: float
    api_p99_ms: float
    api_max_ms: float
    streams: int
    events_per_stream: int
    slowest_stream_after_end_s: float


@contextlib.asynccontextmanager
async def serving(data: Path, inventories: Path) -> AsyncIterator[str]:
    """``bulkkm serve`` in its own process; its URL."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkkm",
        "serve",
        "--data",
        str(data),
        "--inventories",
        str(inventories),
        "--listen",
        "127.0.0.1:0",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    try:
        async with asyncio.timeout(60):
            first = (await process.stdout.readline()).decode()
        if "listening on " not in first:
            raise RuntimeError(f"bulkkm serve did not start: {first!r}")
        yield first.split("listening on ")[1].strip()
    finally:
        process.terminate()
        await process.wait()


async def api_load(
    session: aiohttp.ClientSession, url: str, run_id: str, stop: asyncio.Event
) -> list[float]:
    """API calls one after another until ``stop``; each call's seconds."""
    took: list[float] = []
    n = 0
    while not stop.is_set():
        path = API_PATHS[n % len(API_PATHS)].format(id=run_id)
        n += 1
        started = time.perf_counter()
        async with session.get(url + path) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"GET {path}: {response.status}")
        took.append(time.perf_counter() - started)
    return took


async def stream(session: aiohttp.ClientSession, url: str, run_id: str) -> tuple[int, float]:
    """One SSE client to the stream's end: events received, and when it ended."""
    events = 0
    async with session.get(
        f"{url}/api/v1/runs/{run_id}/events", timeout=aiohttp.ClientTimeout(total=None)
    ) as response:
        if response.status != 200:
            raise RuntimeError(f"events: {response.status}")
        async for line in response.content:
            if line.startswith(b"id: "):
                events += 1
    return events, time.time()


async def scenario(name: str, url: str, token: str, *, api_clients: int, sse_clients: int) -> Row:
    """One check of the whole fleet under this scenario's clients."""
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        body = {"inventory": "fleet.yaml", "command": "check"}
        async with session.post(f"{url}/api/v1/runs", json=body) as response:
            created = await response.json()
            if response.status != 201:
                raise RuntimeError(f"POST /runs: {created}")
        run_id = created["id"]
        stop = asyncio.Event()
        loads = [
            asyncio.create_task(api_load(session, url, run_id, stop)) for _ in range(api_clients)
        ]
        streams = [asyncio.create_task(stream(session, url, run_id)) for _ in range(sse_clients)]
        while True:
            async with session.get(f"{url}/api/v1/runs/{run_id}") as response:
                run = await response.json()
            if run["state"] in DONE:
                break
            await asyncio.sleep(0.25)
        stop.set()
        latencies = sorted(t for took in await asyncio.gather(*loads) for t in took)
        received = list(await asyncio.gather(*streams))
    if not run["counts"]:
        raise RuntimeError(f"the run did nothing: {run['state']}: {run['message']}")
    if len({events for events, _ in received}) > 1:
        raise RuntimeError(f"streams received different numbers of events: {received}")
    finished = datetime.fromisoformat(run["finished_at"])
    makespan = (finished - datetime.fromisoformat(run["started_at"])).total_seconds()
    ended = finished.timestamp()

    def pct(q: float) -> float:
        """A percentile of the API calls' latency, in ms."""
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return Row(
        scenario=name,
        makespan_s=round(makespan, 2),
        targets=sum(run["counts"].values()),
        api_calls=len(latencies),
        api_p50_ms=round(pct(0.50), 1),
        api_p99_ms=round(pct(0.99), 1),
        api_max_ms=round(latencies[-1] * 1000, 1) if latencies else float("nan"),
        streams=sse_clients,
        events_per_stream=received[0][0] if received else 0,
        slowest_stream_after_end_s=round(max((t for _, t in received), default=ended) - ended, 2),
    )


async def main_async(args: argparse.Namespace, folder: Path) -> list[Row]:
    """The fleet, the service, the three scenarios."""
    shape = FleetShape(clusters=args.clusters, svms=args.svms, latency_ms=args.latency_ms)
    with running_fleet(shape, folder / "fleet") as fleet:
        inventories = folder / "inventories"
        inventories.mkdir()
        (inventories / "fleet.yaml").write_bytes(fleet.inventory.read_bytes())
        data = folder / "data"
        token = await asyncio.to_thread(create_token, data, "bench", Scope.ADMIN)
        rows = []
        async with serving(data, inventories) as url:
            for name, api, sse in (
                ("quiet", 0, 0),
                ("api", args.api_clients, 0),
                (f"api+{args.sse_clients} sse", args.api_clients, args.sse_clients),
            ):
                row = await scenario(name, url, token, api_clients=api, sse_clients=sse)
                print(f"  {row}", file=sys.stderr, flush=True)
                rows.append(row)
    return rows


def main() -> None:
    """Parse options, run, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--svms", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--api-clients", type=int, default=4)
    parser.add_argument("--sse-clients", type=int, default=50)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bulkkm-service-load-") as folder:
        rows = asyncio.run(main_async(args, Path(folder)))
    print(
        f"\n{args.clusters} x {args.svms}, simulator latency {args.latency_ms:g} ms, "
        f"{args.api_clients} API clients\n"
    )
    print(
        "| scenario | makespan s | targets | API calls | API p50 ms | API p99 ms | API max ms "
        "| streams | events/stream | slowest stream after end s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r.scenario} | {r.makespan_s} | {r.targets} | {r.api_calls} | {r.api_p50_ms} "
            f"| {r.api_p99_ms} | {r.api_max_ms} | {r.streams} | {r.events_per_stream} "
            f"| {r.slowest_stream_after_end_s} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
