"""A small HTTPS client for tests: TLS verified against the fleet's CA, basic auth per cluster."""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import aiohttp
import orjson

from bulkkm.simulator import FleetSpec, SimCluster, SimKeyManager, SimulatedFleet

__all__ = ["SPEC", "Answer", "Client", "StartFleet", "key_manager"]

StartFleet: TypeAlias = Callable[..., Awaitable[SimulatedFleet]]
"""The ``start_fleet`` fixture: ``await start_fleet(spec)``."""

SPEC = FleetSpec(
    clusters=2,
    svms=3,
    seed=11,
    external_ratio=1.0,
    onboard_ratio=0.0,
    cluster_external_ratio=1.0,
    initial_servers=0,
)
"""A small fleet where every key manager is external and starts with no server."""


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer: status, decoded JSON body, Location header."""

    status: int
    # Decoded JSON of any shape: tests index into it freely.
    body: Any
    location: str | None
    content_type: str

    @property
    def code(self) -> str | None:
        """ONTAP's error code, if the answer is an error document."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return code if isinstance(code, str) else None
        return None


def key_manager(cluster: SimCluster, svm: str | None = "svm000") -> SimKeyManager:
    """The key manager of ``svm`` (None: the cluster-scoped one); it must exist."""
    km = cluster.key_manager_of(svm)
    assert km is not None
    return km


class Client:
    """Requests to one simulated cluster, over TLS verified against the fleet's CA."""

    def __init__(self, session: aiohttp.ClientSession, fleet: SimulatedFleet, name: str) -> None:
        """Talk to cluster ``name`` of ``fleet`` through ``session``."""
        self.fleet = fleet
        self.cluster = fleet.cluster(name)
        self.ssl = ssl.create_default_context(cafile=str(fleet.ca_file))
        self._session = session

    @property
    def base(self) -> str:
        """``https://host:port``."""
        return f"https://{self.cluster.address}"

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        password: str | None = None,
        seconds: float = 10.0,
    ) -> Answer:
        """Send one request (``password`` overrides the cluster's; ``seconds`` its timeout)."""
        auth = aiohttp.encode_basic_auth(self.cluster.username, password or self.cluster.password)
        data = None if json is None else orjson.dumps(json)
        headers = {"Authorization": auth, "Content-Type": "application/json"}
        async with self._session.request(
            method,
            self.base + path,
            data=data,
            headers=headers,
            ssl=self.ssl,
            timeout=aiohttp.ClientTimeout(total=seconds),
        ) as response:
            raw = await response.read()
            return Answer(
                status=response.status,
                body=orjson.loads(raw) if raw else None,
                location=response.headers.get("Location"),
                content_type=response.headers.get("Content-Type", ""),
            )

    async def get(self, path: str, **kw: Any) -> Answer:
        """GET ``path``."""
        return await self.request("GET", path, **kw)

    async def post(self, path: str, json: object, **kw: Any) -> Answer:
        """POST ``json`` to ``path``."""
        return await self.request("POST", path, json=json, **kw)

    async def patch(self, path: str, json: object, **kw: Any) -> Answer:
        """PATCH ``path`` with ``json``."""
        return await self.request("PATCH", path, json=json, **kw)

    async def delete(self, path: str, **kw: Any) -> Answer:
        """DELETE ``path``."""
        return await self.request("DELETE", path, **kw)
