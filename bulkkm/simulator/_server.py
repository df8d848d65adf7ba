"""One cluster's HTTPS endpoint: its port, basic auth, and the faults around its API.

Every cluster has its own port. A dead cluster keeps its port bound but not listening, so
connecting is refused and the number cannot be taken by anyone else. Dropping a request
aborts the transport, so the client sees the connection close without an answer.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hmac
import random
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from bulkkm.servers import join_host_port
from bulkkm.simulator import _errors as codes
from bulkkm.simulator._api import ClusterApi, route
from bulkkm.simulator._errors import TRANSIENT_CODES, error_body
from bulkkm.simulator._journal import RequestRecord, VerifyRecord, WriteRecord
from bulkkm.simulator._model import SimCluster
from bulkkm.simulator._spec import ANSWER_FAULTS, Faults

__all__ = ["ClusterServer"]

_BACKLOG = 256
_TLS_READ_BUFFER = 32 * 1024
_HANG_POLL = 0.05
_FAULT_KINDS = (
    "jitter",
    "throttle",
    "transient",
    "error500",
    "reset",
    "hang",
    "ambiguous",
    "job_error500",
    *ANSWER_FAULTS,
    "quorum",
    "locked",
    "connect",
)


def _bind(host: str, port: int = 0) -> socket.socket:
    """A TCP socket bound to ``host:port`` (not listening yet)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _shrink_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Give a TLS connection a 32 KiB read buffer instead of asyncio's 256 KiB.

    asyncio's SSLProtocol (CPython 3.11+) allocates and zero-fills 256 KiB per connection;
    with a connection to each of 1,000 clusters that alone is 250 MB. Its buffer is
    private, so this does nothing where the attributes are not what we expect.
    """
    protocol = getattr(transport, "_ssl_protocol", None)
    if protocol is None or not isinstance(getattr(protocol, "_ssl_buffer", None), bytearray):
        return
    buffer = bytearray(_TLS_READ_BUFFER)
    protocol.max_size = _TLS_READ_BUFFER
    protocol._ssl_buffer = buffer
    protocol._ssl_buffer_view = memoryview(buffer)


class _Handler(web.RequestHandler):
    """aiohttp's connection handler, lighter on memory for TLS connections."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Shrink the TLS read buffer, then start serving the connection."""
        _shrink_tls_read_buffer(transport)
        super().connection_made(transport)


def _drop(request: web.BaseRequest) -> web.StreamResponse:
    """Close the connection without answering (aiohttp then fails quietly to write)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=500)


def _json(status: int, body: object, *, location: str | None = None) -> web.Response:
    """An ONTAP answer: HAL+JSON, with ``Location`` when something was created."""
    headers = {"Location": location} if location else None
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/hal+json", headers=headers
    )


class ClusterServer:
    """Serves one ``SimCluster`` over HTTPS on its own port, with its faults."""

    def __init__(
        self,
        cluster: SimCluster,
        *,
        index: int,
        seed: int,
        tls: ssl.SSLContext,
        closing: asyncio.Event,
        writes: list[WriteRecord],
        checks: list[VerifyRecord],
        requests: list[RequestRecord],
        job_mode: bool,
        job_delay: float,
    ) -> None:
        """Prepare the endpoint; ``start`` binds it."""
        self.cluster = cluster
        self.api = ClusterApi(
            cluster,
            hooks=self,
            writes=writes,
            checks=checks,
            job_mode=job_mode,
            job_delay=job_delay,
        )
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.in_flight = 0
        self.peak = 0
        self.refused = 0
        self._rngs = {k: random.Random(f"bulkkm-faults:{seed}:{index}:{k}") for k in _FAULT_KINDS}
        self._transient_turn = 0
        self._tls = tls
        self._closing = closing
        self._requests = requests
        self._web = web.Server(self._handle, access_log=None)
        self._sock: socket.socket | None = None
        self._server: asyncio.Server | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._reviving: asyncio.Task[None] | None = None
        self._host = ""
        self._port = 0

    async def start(self, host: str) -> None:
        """Bind an ephemeral port on ``host``; listen on it unless the cluster is dead."""
        self._host = host
        self._sock = _bind(host)
        self._port = self._sock.getsockname()[1]
        self.cluster.address = join_host_port(host, self._port)
        if not self.cluster.faults.dead:
            await self._serve()

    async def _serve(self) -> None:
        """Accept connections on the bound socket."""
        sock = self._sock
        assert sock is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, sock=sock, ssl=self._tls, backlog=_BACKLOG
        )
        self._sock = None  # the server owns it now, and closes it

    def _protocol(self) -> web.RequestHandler:
        """A handler for one new connection (what ``web.Server`` makes, with less memory)."""
        kwargs: dict[str, Any] = {"access_log": None}  # aiohttp annotates a Logger, takes None
        return _Handler(self._web, loop=asyncio.get_running_loop(), **kwargs)

    def set_faults(self, faults: Faults) -> None:
        """Change the faults now; killing or reviving the cluster opens or closes its port."""
        was_dead = self.cluster.faults.dead
        self.cluster.faults = faults
        if faults.dead and not was_dead:
            if self._reviving is not None:
                self._reviving.cancel()
                self._reviving = None
            if self._server is not None:
                self._server.close()
                self._server = None
            self._abort_connections()
            if self._sock is None:
                self._sock = _bind(self._host, self._port)
        elif was_dead and not faults.dead and self._sock is not None:
            # Listen at once, so connections wait in the backlog until the server accepts.
            self._sock.listen(_BACKLOG)
            self._reviving = asyncio.get_running_loop().create_task(self._serve())

    async def close(self) -> None:
        """Stop listening, drop every connection and forget pending jobs."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._reviving is not None:
            await self._reviving
        if self._server is not None:
            self._server.close()
            self._server = None
        # Abort rather than close: a graceful TLS close waits for clients that may never read
        # again (an idle pooled connection in another thread), and would outlive the loop.
        self._abort_connections()
        await self._web.shutdown(1.0)
        await asyncio.sleep(0)  # let the aborted transports close their sockets
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _abort_connections(self) -> None:
        """Drop every open connection at once, in flight or idle."""
        for connection in self._web.connections:
            if connection.transport is not None:
                connection.transport.abort()

    # Hooks for the API (see _api.Hooks).

    def transient(self) -> str | None:
        """Draw whether a key-server POST fails transiently; the codes take turns."""
        if not self._draw("transient", self.cluster.faults.transient_rate):
            return None
        code = TRANSIENT_CODES[self._transient_turn % len(TRANSIENT_CODES)]
        self._transient_turn += 1
        return code

    def ambiguous(self) -> bool:
        """Draw whether the answer to an applied POST is dropped."""
        return self._draw("ambiguous", self.cluster.faults.ambiguous_rate)

    def answer_fault(self) -> str | None:
        """Draw whether an applied POST gets a wrong answer, and which (each its own stream)."""
        faults = self.cluster.faults
        for name in ANSWER_FAULTS:
            if self._draw(name, getattr(faults, name)):
                return name
        return None

    def quorum(self) -> bool:
        """Draw whether a key-server DELETE finds a node out of quorum."""
        return self._draw("quorum", self.cluster.faults.quorum_rate)

    def locked(self) -> bool:
        """Draw whether a key-server DELETE finds its SVM locked (``transient_rate``)."""
        return self._draw("locked", self.cluster.faults.transient_rate)

    def applied_error(self) -> bool:
        """Draw whether a DELETE just applied is answered 500 (``applied_error500_rate``)."""
        return self._draw("applied_error500_rate", self.cluster.faults.applied_error500_rate)

    def connect_delay(self) -> float:
        """Draw how long one node takes to reach a server just added: 50-100% of the delay."""
        delay = self.cluster.faults.connect_delay
        if delay <= 0:
            return 0.0
        return delay * (0.5 + 0.5 * self._rngs["connect"].random())

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` unless the fleet closes first."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            """Forget the timer, then run the callback."""
            self._timers.discard(handle)
            callback()

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    # Serving.

    def _draw(self, kind: str, rate: float) -> bool:
        """A seeded draw from this cluster's stream for ``kind`` (no draw at rate 0)."""
        return rate > 0 and self._rngs[kind].random() < rate

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds``; False if the fleet started closing meanwhile."""
        if self._closing.is_set():
            return False
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            return True
        return False

    def _authorized(self, request: web.BaseRequest) -> bool:
        """Whether the request carries this cluster's username and password (HTTP basic)."""
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        expected = f"{self.cluster.username}:{self.cluster.password}".encode()
        return hmac.compare_digest(given, expected)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Admit the request (or drop it at a full queue / dead cluster) and answer it."""
        faults = self.cluster.faults
        if faults.dead:
            return _drop(request)
        if faults.max_in_flight is not None and self.in_flight >= faults.max_in_flight:
            self.refused += 1
            return _drop(request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._answer(request, faults)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.BaseRequest, faults: Faults) -> web.StreamResponse:
        """Apply latency and faults, check credentials, then let the API answer."""
        where = route(request.raw_path)
        method = request.method
        self.counts[method, where.template] += 1
        self._requests.append(
            RequestRecord(self.cluster.name, method, where.template, time.monotonic())
        )
        delay = faults.latency_of(method, where.kind)
        if faults.jitter:
            delay += self._rngs["jitter"].uniform(0.0, faults.jitter)
        if (delay and not await self._pause(delay)) or self.cluster.faults.dead:
            return _drop(request)
        if self._draw("hang", faults.hang_rate):
            while request.transport is not None and not request.transport.is_closing():
                if not await self._pause(_HANG_POLL):
                    break
            return _drop(request)
        if self._draw("reset", faults.reset_rate):
            return _drop(request)
        if self._draw("error500", faults.error500_rate) or (
            where.kind == "job" and self._draw("job_error500", faults.job_error500_rate)
        ):
            return _json(500, error_body(codes.INTERNAL, codes.MESSAGES[codes.INTERNAL]))
        if (
            method == "POST"
            and where.kind == "key_servers"
            and self._draw("throttle", faults.throttle_rate)
        ):
            # Throttled before anything is read or applied; no ONTAP code documents it.
            response = _json(429, {"error": {"message": "Too many requests."}})
            response.headers["Retry-After"] = str(faults.throttle_retry_after)
            return response
        if not self._authorized(request):
            response = _json(401, error_body(codes.NOT_AUTHENTICATED, "Authentication failed."))
            response.headers["WWW-Authenticate"] = 'Basic realm="ONTAP"'
            return response
        body = await request.read()
        reply = self.api.handle(method, where, request.raw_path, request.query, body)
        if reply.drop:
            return _drop(request)
        if reply.raw is not None:
            headers = {"Location": reply.location} if reply.location else None
            content_type = "application/hal+json" if reply.raw else None
            return web.Response(
                body=reply.raw or None,
                status=reply.status,
                content_type=content_type,
                headers=headers,
            )
        return _json(reply.status, reply.body, location=reply.location)
