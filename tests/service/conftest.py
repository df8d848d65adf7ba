"""The service end to end: ``Service`` in the test's loop, the simulator beside it, real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import stamina

from bulkkm.service import Scope, Service, ServiceConfig
from bulkkm.service._db import Database
from bulkkm.service._tokens import hash_token, new_token
from bulkkm.simulator import FleetSpec, SimulatedFleet
from tests.engine.conftest import NEW_SERVERS

DONE = frozenset(
    {"succeeded", "failed", "stopped", "cancelled", "discarded", "expired", "interrupted"}
)


class Clock:
    """A clock a test moves forward."""

    def __init__(self) -> None:
        """Now."""
        self.offset = timedelta()

    def __call__(self) -> datetime:
        """Now, plus what the test added."""
        return datetime.now(UTC) + self.offset


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer as a client sees it."""

    status: int
    body: Any
    raw: bytes
    headers: Any


class Client:
    """The API as one token holder sees it."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str | None) -> None:
        """Speak to ``url`` with ``token`` (None: no Authorization header)."""
        self.session = session
        self.url = url
        self.token = token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The Authorization header, and more."""
        base = {} if self.token is None else {"Authorization": f"Bearer {self.token}"}
        return base | (extra or {})

    async def call(self, method: str, path: str, body: object = None) -> Answer:
        """One request; the answer's JSON when it is JSON."""
        data = None if body is None else orjson.dumps(body)
        async with self.session.request(
            method, self.url + path, data=data, headers=self.headers()
        ) as response:
            raw = await response.read()
            parsed = orjson.loads(raw) if response.content_type == "application/json" else None
            return Answer(response.status, parsed, raw, response.headers)

    async def get(self, path: str) -> Answer:
        """GET."""
        return await self.call("GET", path)

    async def post(self, path: str, body: object = None) -> Answer:
        """POST."""
        return await self.call("POST", path, body)

    async def run(self, run_id: str) -> dict[str, Any]:
        """A run's JSON."""
        answer = await self.get(f"/api/v1/runs/{run_id}")
        assert answer.status == 200, answer.body
        return dict(answer.body)

    async def until(self, run_id: str, *states: str, deadline: float = 30.0) -> dict[str, Any]:
        """Poll a run until it is in one of ``states``."""
        async with asyncio.timeout(deadline):
            while (run := await self.run(run_id))["state"] not in states:  # noqa: ASYNC110 -- a client polls
                await asyncio.sleep(0.02)
        return run

    async def start(self, command: str, **options: object) -> dict[str, Any]:
        """POST /runs on fleet.yaml; 201 asserted."""
        answer = await self.post(
            "/api/v1/runs", {"inventory": "fleet.yaml", "command": command, "options": options}
        )
        assert answer.status == 201, answer.body
        return dict(answer.body)

    async def events(self, run_id: str, *, query: str = "", last: int | None = None) -> list[Any]:
        """Every SSE message of a run's stream until the server closes it."""
        extra = {} if last is None else {"Last-Event-ID": str(last)}
        async with self.session.get(
            f"{self.url}/api/v1/runs/{run_id}/events{query}", headers=self.headers(extra)
        ) as response:
            if response.status == 204:
                return []
            assert response.status == 200
            assert response.content_type == "text/event-stream"
            text = (await response.read()).decode()
        return parse_sse(text)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE messages as dicts: ``id``, ``event``, ``data`` (parsed)."""
    messages = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            fields["data"] = orjson.loads(fields["data"])
            messages.append(fields)
    return messages


@dataclasses.dataclass
class Harness:
    """A fleet, a service over it, and one client per scope."""

    fleet: SimulatedFleet
    service: Service
    data: Path
    inventory: Path
    clock: Clock
    tokens: dict[str, str]
    clients: dict[str, Client]
    anonymous: Client

    @property
    def admin(self) -> Client:
        """The admin's client."""
        return self.clients["admin"]


async def add_token(data: Path, name: str, scope: Scope) -> str:
    """A token stored in the service's database (as ``bulkkm token create`` does)."""
    token = new_token()
    db = await Database.open(data / "bulkkm.db")
    try:
        await db.add_token(
            name=name, scope=scope, token_hash=hash_token(token), now=datetime.now(UTC)
        )
    finally:
        await db.close()
    return token


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    spec: FleetSpec,
    *,
    configure: Callable[[ServiceConfig], ServiceConfig] = lambda c: c,
    **inventory: object,
) -> AsyncIterator[Harness]:
    """A fleet, the service on it (its inventory as ``fleet.yaml``), tokens of every scope."""
    inventory.setdefault("key_servers", NEW_SERVERS)
    async with SimulatedFleet(spec) as fleet, _service(tmp_path, fleet, configure, inventory) as h:
        yield h


@contextlib.asynccontextmanager
async def _service(
    tmp_path: Path,
    fleet: SimulatedFleet,
    configure: Callable[[ServiceConfig], ServiceConfig],
    inventory: dict[str, object],
) -> AsyncIterator[Harness]:
    """The service on a running fleet."""
    data = tmp_path / "data"
    folder = tmp_path / "inventories"
    folder.mkdir()
    path = fleet.write_inventory(folder / "fleet.yaml", **inventory)  # type: ignore[arg-type]
    tokens = {scope.value: await add_token(data, f"{scope.value}-bot", scope) for scope in Scope}
    clock = Clock()
    config = configure(
        ServiceConfig(data=data, host="127.0.0.1", port=0, inventories=folder, clock=clock)
    )
    with stamina.set_testing(True, attempts=3):
        async with Service(config) as service, aiohttp.ClientSession() as session:
            clients = {name: Client(session, service.url, token) for name, token in tokens.items()}
            yield Harness(
                fleet=fleet,
                service=service,
                data=data,
                inventory=path,
                clock=clock,
                tokens=tokens,
                clients=clients,
                anonymous=Client(session, service.url, None),
            )
