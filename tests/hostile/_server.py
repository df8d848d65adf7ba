"""A fake ONTAP over real HTTPS on loopback, whose answers each test makes misbehave.

``HostileServer`` answers the few calls bulkkm makes as ONTAP would (version, key managers,
SVMs, key-server POST and read-back) until a test replaces a route with ``on``; every
request it receives is kept in ``seen`` (method, raw path, headers, body), so a test can
assert what reached it. ``PlainListener`` is a plain-HTTP port that records the raw bytes it
receives. ``Pki`` is a throw-away CA the client trusts, plus certificates that should fail.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Final
from urllib.parse import quote, quote_plus

import aiohttp
import orjson
import trustme
from aiohttp import web

from bulkkm.inventory import Cluster, Limits, Tls
from bulkkm.ontap import OntapClient
from bulkkm.secret import Secret

__all__ = [
    "CLUSTER_KM",
    "HAL",
    "KM_PATH",
    "Handler",
    "HostileServer",
    "Pki",
    "PlainListener",
    "RawServer",
    "Seen",
    "client_for",
    "credentials_of",
    "echo_answer",
    "encoded_forms",
    "json_answer",
    "open_gate",
    "svm_km",
]

HAL: Final = "application/hal+json"
CLUSTER_KM: Final = "0c2ab5c4-0000-4000-8000-00000000c1c1"
KM_PATH: Final = "/api/security/key-managers"
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def svm_km(index: int) -> str:
    """The uuid of the ``index``-th SVM's key manager."""
    return f"0c2ab5c4-0000-4000-8000-{index:012d}"


def json_answer(
    status: int,
    body: object,
    *,
    content_type: str = HAL,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An answer with a JSON body (or raw bytes, sent as they are)."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return web.Response(body=raw, status=status, content_type=content_type, headers=headers)


@dataclasses.dataclass(frozen=True, slots=True)
class Seen:
    """One request that reached the server."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def _hex_case(text: str, *, upper: bool) -> str:
    """``text`` with the hex digits of every ``%XX`` and ``\\uXXXX`` escape in one case."""
    return re.sub(
        r"%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}",
        lambda m: m.group().upper().replace("\\U", "\\u") if upper else m.group().lower(),
        text,
    )


def encoded_forms(secret: str, user: str = "admin") -> tuple[str, ...]:
    """Every form in which a server may quote ``secret`` back.

    As written; JSON-escaped (``\\uXXXX`` in either case, or UTF-8 kept, ``/`` as ``\\/``);
    as a Python repr; URL-encoded (``quote``, ``quote_plus``, upper or lower hex); with
    control characters replaced (U+FFFD) or escaped (``\\x1b``); base64, standard or
    URL-safe, padded or not, of the secret and of ``user:secret``.
    """
    escaped = json.dumps(secret)[1:-1]
    quoted = (quote(secret, safe=""), quote(secret), quote_plus(secret))
    forms = [
        secret,
        escaped,
        _hex_case(escaped, upper=True),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        escaped.replace("/", "\\/"),
        repr(secret)[1:-1],
        *quoted,
        *(_hex_case(q, upper=False) for q in quoted),
        "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in secret),
        "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in secret),
    ]
    for raw in (secret, f"{user}:{secret}"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            token = encode(raw.encode()).decode()
            forms += [token, token.rstrip("=")]
    return tuple(dict.fromkeys(forms))


def credentials_of(seen: Seen) -> tuple[str, ...]:
    """What a request carried that is secret: its Authorization header (whole, the token,
    ``user:password`` and the password) and every password of its body."""
    found: list[str] = []
    header = seen.headers.get("Authorization", "")
    if header:
        token = header.removeprefix("Basic ")
        pair = base64.b64decode(token).decode()
        found += [header, token, pair, pair.partition(":")[2]]
    if seen.body:
        document = orjson.loads(seen.body)
        for record in document.get("records", [document]):
            if "password" in record:
                found.append(str(record["password"]))
    return tuple(dict.fromkeys(found))


def echo_error(credentials: Sequence[str]) -> dict[str, object]:
    """An ONTAP error object quoting ``credentials`` in every form, in every one of its fields."""
    quoted = " ".join(form for secret in credentials for form in encoded_forms(secret))
    return {
        "code": quoted,
        "message": f"Invalid input: {quoted}",
        "target": quoted,
        "arguments": [{"code": quoted, "message": quoted}],
    }


def echo_answer(status: int, seen: Seen) -> web.Response:
    """An error answer quoting every credential of ``seen`` in every field and encoding."""
    return json_answer(status, {"error": echo_error(credentials_of(seen))})


class Pki:
    """A CA the client trusts (``ca_file``), and a second CA it does not."""

    def __init__(self, directory: Path) -> None:
        """Create both CAs; write the trusted one's PEM under ``directory``."""
        self.ca = trustme.CA(organization_name="bulkkm hostile tests")
        self.rogue = trustme.CA(organization_name="nobody trusts this")
        self.ca_file = directory / "hostile-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    def context(
        self,
        *names: str,
        rogue: bool = False,
        expired: bool = False,
    ) -> ssl.SSLContext:
        """A server context whose certificate names ``names`` (default: the loopbacks)."""
        issuer = self.rogue if rogue else self.ca
        now = datetime.now(UTC)
        cert = issuer.issue_cert(
            *(names or ("127.0.0.1", "127.0.0.2", "localhost")),
            not_before=now - timedelta(days=30) if expired else None,
            not_after=now - timedelta(days=1) if expired else None,
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context


class HostileServer:
    """An HTTPS server that speaks enough ONTAP for bulkkm, until a route is replaced."""

    def __init__(
        self,
        tls: ssl.SSLContext | None,
        *,
        host: str = "127.0.0.1",
        svms: Sequence[str] = ("svm_a",),
        version: tuple[int, int, int] = (9, 14, 1),
    ) -> None:
        """Serve ``svms`` (each with an external key manager) and a cluster-scoped one."""
        self.tls = tls
        self.host = host
        self.port = 0
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.peak = 0
        """The most requests handled at once (a request counts until its handler returns)."""
        self.version = version
        self.svms = tuple(svms)
        self.key_managers: list[dict[str, object]] = [
            {"uuid": CLUSTER_KM, "scope": "cluster", "external": {"servers": []}}
        ]
        for i, name in enumerate(svms, 1):
            self.key_managers.append(
                {
                    "uuid": svm_km(i),
                    "scope": "svm",
                    "svm": {"name": name, "uuid": f"svm-{i}"},
                    "external": {"servers": []},
                }
            )
        self.added: dict[str, list[str]] = {}
        self.closing = asyncio.Event()
        self._routes: dict[tuple[str, str], Handler] = {}
        self.fallback: Handler | None = None
        """Answers every request no replaced route takes, instead of the ONTAP behaviour."""
        self._web = web.Server(self._handle, access_log=None)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``host:port``, as an inventory names it."""
        return f"{self.host}:{self.port}"

    def on(self, method: str, path: str, handler: Handler) -> None:
        """Answer ``method path`` (the path without its query) with ``handler`` from now on."""
        self._routes[method, path] = handler

    def answer(
        self,
        method: str,
        path: str,
        status: int,
        body: object,
        *,
        content_type: str = HAL,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``method path`` with a fixed answer from now on."""

        async def fixed(_request: web.BaseRequest) -> web.StreamResponse:
            return json_answer(status, body, content_type=content_type, headers=headers)

        self.on(method, path, fixed)

    def echo_credentials(self, method: str, path: str, status: int = 400) -> None:
        """Answer ``method path`` with an error quoting the credentials it was sent, in every
        field and every encoding; with ``status`` 202, the POST is accepted and its job fails
        with such an error (the job's own ``code`` and ``message`` quote them too)."""

        async def echo(_request: web.BaseRequest) -> web.StreamResponse:
            seen = self.seen[-1]
            if status != 202:
                return echo_answer(status, seen)
            job = f"/api/cluster/jobs/echo-{len(self.seen)}"

            async def failed(_request: web.BaseRequest) -> web.StreamResponse:
                credentials = (*credentials_of(seen), *credentials_of(self.seen[-1]))
                error = echo_error(credentials)
                body = {"state": "failure", "code": error["code"], "message": error["message"]}
                return json_answer(200, {**body, "error": error})

            self.on("GET", job, failed)
            return json_answer(202, {"job": {"uuid": job, "_links": {"self": {"href": job}}}})

        self.on(method, path, echo)

    async def __aenter__(self) -> HostileServer:
        """Start listening on an ephemeral port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._web, self.host, 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop: drop every connection, whatever its handler is doing."""
        self.closing.set()
        if self._server is not None:
            self._server.close()
        for connection in self._web.connections:
            if connection.transport is not None:
                connection.transport.abort()
        await self._web.shutdown(0.5)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Record the request, then answer it by its replaced route or as ONTAP."""
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            body = await request.read()
            self.seen.append(Seen(request.method, request.raw_path, dict(request.headers), body))
            handler = self._routes.get((request.method, request.path)) or self.fallback
            if handler is not None:
                return await handler(request)
            return self._ontap(request.method, request.path, body)
        finally:
            self.in_flight -= 1

    def _ontap(self, method: str, path: str, body: bytes) -> web.StreamResponse:
        """What ONTAP answers to the calls bulkkm makes."""
        generation, major, minor = self.version
        if (method, path) == ("GET", "/api/cluster"):
            version = {"generation": generation, "major": major, "minor": minor}
            return json_answer(
                200, {"version": {"full": f"{generation}.{major}.{minor}", **version}}
            )
        if (method, path) == ("GET", KM_PATH):
            return json_answer(
                200, {"records": self.key_managers, "num_records": len(self.key_managers)}
            )
        if (method, path) == ("GET", "/api/svm/svms"):
            return json_answer(200, {"records": [{"name": n} for n in self.svms]})
        parts = path.split("/")
        if path.startswith(KM_PATH + "/") and len(parts) == 6 and parts[5] == "key-servers":
            uuid = parts[4]
            if method == "POST":
                document = orjson.loads(body)
                records = document.get("records", [document])
                self.added.setdefault(uuid, []).extend(str(r["server"]) for r in records)
                location = f"{KM_PATH}/{uuid}/key-servers/{records[0]['server']}"
                return json_answer(201, {}, headers={"Location": location})
            servers = self.added.get(uuid, [])
            return json_answer(200, {"records": [{"server": s} for s in servers]})
        return json_answer(404, {"error": {"message": "API not found.", "code": "3"}})


class PlainListener:
    """A plain-HTTP port: records the bytes of every connection, answers 400, closes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """Not listening before ``async with``."""
        self.host = host
        self.port = 0
        self.connections = 0
        self.received = bytearray()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Keep what the client sends first; answer as an HTTP server does to garbage."""
        self.connections += 1
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(2):
                self.received += await reader.read(65536)
            writer.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def __aenter__(self) -> PlainListener:
        """Listen on an ephemeral port."""
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


class RawServer:
    """A TLS port that answers every connection with fixed bytes, or (``reply=None``) not at all."""

    def __init__(self, tls: ssl.SSLContext, reply: bytes | None) -> None:
        """Not listening before ``async with``."""
        self.tls = tls
        self.reply = reply
        self.port = 0
        self._closing = asyncio.Event()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Send the reply after the request's first bytes (or wait until closing), then close."""
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            with contextlib.suppress(OSError):
                if self.reply is None:
                    await self._closing.wait()
                else:
                    await reader.read(1024)
                    writer.write(self.reply)
                    await writer.drain()
        finally:
            writer.close()
            self._handlers.discard(task)

    async def __aenter__(self) -> RawServer:
        """Listen on an ephemeral port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop; let every handler finish (a cancelled one makes asyncio 3.11 log noise)."""
        self._closing.set()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)


@contextlib.asynccontextmanager
async def open_gate() -> AsyncIterator[None]:
    """A gate that admits every request (the engine's semaphore is not under test here)."""
    yield


def client_for(
    session: aiohttp.ClientSession,
    address: str,
    ca_file: Path,
    *,
    timeout: float = 2.0,
    password: str = "hostile-test-password",
    read_only: bool = False,
) -> OntapClient:
    """An ``OntapClient`` for the server at ``address``, TLS verified against ``ca_file``."""
    host, _, port = address.rpartition(":")
    cluster = Cluster(
        name="hostile",
        host=host,
        port=int(port),
        username="admin",
        password=Secret(password, source="env:HOSTILE_TEST"),
        tls=Tls(ca_file=ca_file),
        limits=Limits(timeout=timeout),
    )
    return OntapClient(session, cluster, gate=open_gate, read_only=read_only)
