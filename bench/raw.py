"""The baseline: the same discover-and-add with bare aiohttp and nothing else.

Same requests as bulkkm (two GETs per cluster in parallel, one POST per key manager
missing a server), same TLS verification, keep-alive, per-cluster concurrency and number of
clusters in flight; none of bulkkm's work (inventory, plan, retries, events, report). Its
requests per second are the most this client machine can get from this simulator.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ssl
import time
from collections.abc import Iterator
from typing import Final

import aiohttp
import orjson

from bench.fleet import ClusterAddress, Fleet

__all__ = ["RAW_SERVER", "RawRun", "raw_rollout"]

RAW_SERVER: Final = "kms-raw.example.com:5696"
"""The server the baseline adds: not the one bulkkm adds, so each finds one add to do."""
KEY_MANAGER_FIELDS: Final = "uuid,scope,svm.name,external.servers,onboard.enabled"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RawRun:
    """What one baseline rollout did and what it cost."""

    seconds: float
    cpu_seconds: float
    requests: int
    posts: int
    errors: int

    @property
    def requests_per_second(self) -> float:
        """Requests completed per second of wall time."""
        return self.requests / self.seconds


@dataclasses.dataclass(slots=True)
class _Tally:
    """Counters shared by the cluster workers."""

    requests: int = 0
    posts: int = 0
    errors: int = 0


async def raw_rollout(
    fleet: Fleet,
    *,
    concurrency: int = 4,
    active_clusters: int = 256,
    server: str = RAW_SERVER,
    read_only: bool = False,
) -> RawRun:
    """Add ``server`` to every SVM key manager of the fleet; time it.

    ``read_only`` sends a GET of the key manager's key servers instead of each POST: the
    same number of requests and connections, no change to the fleet (a warm-up).
    """
    context = ssl.create_default_context(cafile=str(fleet.ca_file))
    token = base64.b64encode(f"{fleet.username}:{fleet.password}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Accept": "application/hal+json"}
    tally = _Tally()
    clusters = iter(fleet.clusters)
    started, cpu = time.perf_counter(), time.process_time()
    connector = aiohttp.TCPConnector(limit=concurrency * active_clusters, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        worker = _Worker(session, context, concurrency, server, tally, read_only=read_only)
        async with asyncio.TaskGroup() as group:
            for _ in range(min(active_clusters, len(fleet.clusters))):
                group.create_task(worker.work(clusters))
    return RawRun(
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu,
        requests=tally.requests,
        posts=tally.posts,
        errors=tally.errors,
    )


class _Worker:
    """Takes clusters one after another and rolls each out."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        context: ssl.SSLContext,
        concurrency: int,
        server: str,
        tally: _Tally,
        *,
        read_only: bool,
    ) -> None:
        """Share the session, TLS context and counters."""
        self._session = session
        self._ssl = context
        self._concurrency = concurrency
        self._body = orjson.dumps({"server": server})
        self._server = server
        self._tally = tally
        self._read_only = read_only

    async def work(self, clusters: Iterator[ClusterAddress]) -> None:
        """Roll out clusters until none is left."""
        for cluster in clusters:
            await self._cluster(cluster)

    async def _cluster(self, cluster: ClusterAddress) -> None:
        """Discover (two GETs at once), then POST with ``concurrency`` in flight."""
        base = f"https://{cluster.host}:{cluster.port}"
        _, key_managers = await asyncio.gather(
            self._get(f"{base}/api/cluster", {"fields": "version"}),
            self._get(f"{base}/api/security/key-managers", {"fields": KEY_MANAGER_FIELDS}),
        )
        missing = [str(km["uuid"]) for km in _records(key_managers) if _lacks(km, self._server)]
        gate = asyncio.Semaphore(self._concurrency)

        async def post(uuid: str) -> None:
            url = f"{base}/api/security/key-managers/{uuid}/key-servers"
            async with gate:
                if self._read_only:
                    await self._get(url, {"fields": "server"})
                else:
                    await self._post(url)

        async with asyncio.TaskGroup() as group:
            for uuid in missing:
                group.create_task(post(uuid))

    async def _get(self, url: str, params: dict[str, str]) -> object:
        """One GET; its JSON body."""
        async with self._session.get(url, params=params, ssl=self._ssl) as response:
            body = await response.read()
            self._count(response.status)
        return orjson.loads(body) if body else None

    async def _post(self, url: str) -> None:
        """One POST of the key server."""
        async with self._session.post(
            url, data=self._body, ssl=self._ssl, headers={"Content-Type": "application/json"}
        ) as response:
            await response.read()
            self._count(response.status)
            self._tally.posts += 1

    def _count(self, status: int) -> None:
        """Count a request and whether it failed."""
        self._tally.requests += 1
        self._tally.errors += status >= 300


def _records(body: object) -> list[dict[str, object]]:
    """The records of a collection answer (the simulator sends one page)."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise RuntimeError(f"unexpected key-managers answer: {str(body)[:200]}")
    return [r for r in body["records"] if isinstance(r, dict)]


def _lacks(km: dict[str, object], server: str) -> bool:
    """Whether an SVM's external key manager lacks ``server`` (bulkkm's ``svms: all`` choice)."""
    external, onboard = km.get("external"), km.get("onboard")
    if km.get("scope") != "svm" or not isinstance(external, dict):
        return False
    if isinstance(onboard, dict) and onboard.get("enabled") is True:
        return False
    servers = external.get("servers") or []
    return server not in {s.get("server") for s in servers if isinstance(s, dict)}
