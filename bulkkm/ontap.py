"""The ONTAP REST client: the only module that speaks HTTP.

Every aiohttp failure and every ONTAP error answer is translated here, once, into the most
specific ``OntapError`` (see ``bulkkm.errors``). Each request passes through a *gate* the
engine supplies (the cluster's concurrency semaphore and rate limiter), held for that one
request only. A read-only client refuses anything but GET before it reaches the network.

Every HTTP object is made and closed here: ``OntapClient.connect`` opens one keep-alive
session per cluster (its connector sized to the cluster's concurrency) and closes it when
the cluster is done; ``TlsContexts`` builds each distinct TLS context once per run.

A key-server write's failure is marked ``sent`` unless it proves nothing was applied
(``retry.refused``): from the moment the POST leaves, a lost answer, a 5xx, an odd success
answer or a job that cannot be followed leaves its fate unknown, and only reading the key
servers back settles it. A job whose poll fails transiently is polled again first.

A 429 or 503 that says ``Retry-After`` carries the wait (``OntapError.retry_after``) for the
retry policy to honour.

For migrations: a key-server DELETE follows the same rule as a POST (a lost answer is
``sent``, settled by ``has_key_server``); ONTAP's "not configured" answer is a result
(``Removal.ABSENT``), not an error; ``force=true`` is never sent. ``key_server_states`` reads
the servers' ``connectivity`` in whichever shape the release has (``Connectivity``), and
``restore_keys`` / ``keys_restored`` serve ``--verify-keys`` (ONTAP 9.13+).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import contextvars
import dataclasses
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from enum import StrEnum
from importlib.metadata import version as _package_version
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson
import structlog

from bulkkm.errors import (
    ApiError,
    AuthError,
    OntapError,
    ProtocolError,
    RequestTimeout,
    TlsError,
    TransportError,
    WriteRefused,
)
from bulkkm.inventory import Cluster, DesiredServer, Tls
from bulkkm.retry import (
    NOT_CONFIGURED,
    TOO_MANY_REQUESTS,
    classify,
    is_retryable,
    parse_retry_after,
    refused,
)
from bulkkm.secret import redact, remember
from bulkkm.servers import normalize_server
from bulkkm.state import CONNECTIVITY_SINCE, LiveKeyManager, OntapVersion

__all__ = [
    "CLUSTER_NODE",
    "NODE_STATES_SINCE",
    "USER_AGENT",
    "Connectivity",
    "Gate",
    "OntapClient",
    "Removal",
    "TlsContexts",
    "ssl_context",
]

USER_AGENT: Final = f"bulkkm-{_package_version('bulkkm')}"
MAX_BODY: Final = 16 * 1024 * 1024
"""The largest answer read; ONTAP's biggest here (all key managers of a cluster) is far less."""
MAX_MESSAGE: Final = 500
KEY_MANAGER_FIELDS: Final = "uuid,scope,svm.name,external.servers,onboard.enabled"
MAX_RECORDS: Final = 100_000
"""More records than any cluster has: a collection past it is a server paging in circles."""
JOB_DEADLINE: Final = 4
"""A job may run this many request timeouts before it counts as timed out."""
JOB_POLL_INITIAL: Final = 0.2
JOB_POLL_MAX: Final = 2.0
MAX_UUID: Final = 128
RETRY_AFTER_STATUSES: Final = frozenset({429, 503})
"""The answers whose ``Retry-After`` says when to try again."""
NODE_STATES_SINCE: Final = OntapVersion(9, 13)
"""Key servers show ``connectivity.node_states``: every node's state, by name and uuid."""
CLUSTER_NODE: Final = "cluster"
"""The node a state is given for when the release names none (9.7 to 9.12)."""
AVAILABLE: Final = "available"
NOT_RESPONDING: Final = "not_responding"
ABSENT_STATE: Final = "absent"
"""The state of a server asked about that the key manager does not list."""

log = structlog.get_logger("bulkkm.ontap")
Gate = Callable[[], AbstractAsyncContextManager[None]]
Json = dict[str, object]


def ssl_context(tls: Tls) -> ssl.SSLContext | bool:
    """The TLS settings for one ``tls:`` block, built anew (``TlsContexts`` keeps them).

    What ``ssl.create_default_context`` makes (verification and hostname checks on), as a
    ``_ResumingContext``: a cluster's further connections resume its first one's session.
    """
    if not tls.verify:
        return False
    context = _ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls.ca_file:
        context.load_verify_locations(cafile=str(tls.ca_file))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if tls.client_cert is not None:
        key = str(tls.client_key) if tls.client_key else None
        context.load_cert_chain(str(tls.client_cert), key)
    return context


TLS_READ_BUFFER: Final = 32 * 1024
"""The TLS read buffer of a connection under asyncio's own loop (it allocates 256 KiB)."""
_SESSIONS: contextvars.ContextVar[_ClusterConnector | None] = contextvars.ContextVar(
    "bulkkm_tls_sessions", default=None
)
"""The connector opening a connection, for the TLS context to find its session to resume."""


class _ResumingContext(ssl.SSLContext):
    """A client TLS context that resumes the session of the cluster opening the connection.

    Neither asyncio nor aiohttp can pass a session to resume; both loops call ``wrap_bio``
    while the connecting task's context is current, so the connector (``_SESSIONS``) tells
    it which cluster's session to offer. Verification is unchanged: a resumed session is
    one this context verified, for the same host and port.
    """

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """The stdlib's, offering the cluster's session when none is given."""
        connector = _SESSIONS.get()
        if session is None and connector is not None and not server_side:
            session = connector.session()
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)


MAX_PATIENCE: Final = 0.05
"""The longest a request waits for a busy connection of its cluster before another opens."""


class Lanes:
    """A cluster's requests in flight against its connections, open or opening.

    A request that finds every connection busy waits for one to come free, for at most as
    long as opening one took on this cluster (``MAX_PATIENCE`` at most, and before any has
    opened), before aiohttp opens another: a new TLS connection costs the client about
    1.5 ms of CPU (OpenSSL 3.0), more than a whole request on a fast cluster, where one
    connection then serves several requests in turn; on a slow cluster (answers in seconds)
    the wait costs a few milliseconds once, and the cluster opens its ``concurrency``
    connections as before. ``OntapClient.connect`` gives each cluster one; without it (a
    session given by a test) no request waits.
    """

    __slots__ = ("_waiters", "busy", "connect_seconds", "connections", "limit")

    def __init__(self, limit: int) -> None:
        """No connection yet; at most ``limit``."""
        self.limit = limit
        self.connections = 0
        """Connections opened or being opened (one closed since is still counted: then a
        request does not wait, and aiohttp opens one as it would anyway)."""
        self.busy = 0
        """Requests holding a connection, or handed one."""
        self.connect_seconds = 0.0
        """How long the cluster's last connection took to open (TCP and TLS)."""
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        """Hold a free connection; if none is, wait briefly for one, then let one open."""
        if self.busy < self.connections:
            self.busy += 1
            return
        if self.connections and self.connections < self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                async with asyncio.timeout(min(self.connect_seconds or MAX_PATIENCE, MAX_PATIENCE)):
                    await waiter
            except TimeoutError:
                pass
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._release()  # handed a connection it will not use: the next one's
                raise
            finally:
                if not waiter.done():
                    waiter.cancel()
            if not waiter.cancelled():
                return  # handed a connection: already counted busy
        if self.connections < self.limit:
            self.connections += 1  # none came free in time: aiohttp opens another
        self.busy += 1

    async def __aexit__(self, *exc: object) -> None:
        """The request is done: its connection is back in the pool."""
        self._release()

    def _release(self) -> None:
        """Hand the connection to the longest waiter (it stays busy), or count it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy -= 1


class _ClusterConnector(aiohttp.TCPConnector):
    """One cluster's connections: counted, lighter on memory, resuming the first's session."""

    def __init__(self, *, limit: int) -> None:
        """At most ``limit`` connections, opened as requests need them (aiohttp's way)."""
        super().__init__(limit=limit)
        self.lanes = Lanes(limit)
        self.handshakes = 0
        """TLS connections opened."""
        self.resumed = 0
        """Of which resumed an earlier session instead of a full handshake."""
        self._tls: list[ssl.SSLObject] = []
        self._session: ssl.SSLSession | None = None

    def session(self) -> ssl.SSLSession | None:
        """A session of this cluster's that the server may resume (one with a ticket)."""
        if self._session is None:
            for obj in self._tls:
                session = obj.session
                if session is not None and session.has_ticket:
                    self._session = session
                    self._tls.clear()
                    break
        return self._session

    async def _wrap_create_connection(
        self, *args: Any, **kwargs: Any
    ) -> tuple[asyncio.Transport, aiohttp.client_proto.ResponseHandler]:
        """aiohttp's connection, then this cluster's bookkeeping of it."""
        token = _SESSIONS.set(self)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        finally:
            _SESSIONS.reset(token)
        self.lanes.connect_seconds = loop.time() - started
        obj = transport.get_extra_info("ssl_object")
        if isinstance(obj, ssl.SSLObject):
            self.handshakes += 1
            self.resumed += obj.session_reused
            if self._session is None:
                self._tls.append(obj)
            _shrink_tls_read_buffer(transport)
        return transport, protocol


def _shrink_tls_read_buffer(transport: asyncio.BaseTransport) -> None:
    """Give a TLS connection under asyncio's loop a 32 KiB read buffer instead of 256 KiB.

    asyncio's SSLProtocol (CPython 3.11+) allocates and zero-fills 256 KiB per connection:
    2,048 connections would hold 512 MB. Its buffer is private, so this does nothing where
    the attributes are not what we expect (uvloop's is not touched until read into).
    """
    protocol = getattr(transport, "_ssl_protocol", None)
    if protocol is None or not isinstance(getattr(protocol, "_ssl_buffer", None), bytearray):
        return
    buffer = bytearray(TLS_READ_BUFFER)
    protocol.max_size = TLS_READ_BUFFER
    protocol._ssl_buffer = buffer
    protocol._ssl_buffer_view = memoryview(buffer)


class Removal(StrEnum):
    """How a key-server DELETE ended, when it did not fail."""

    REMOVED = "removed"
    """ONTAP removed it (200, or its job succeeded)."""
    ABSENT = "absent"
    """ONTAP says the server is not configured (65536843): nothing was removed."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Connectivity:
    """How the nodes of a cluster reach some key servers of one key manager, as one read saw it.

    ``servers``: server -> node name -> state (``available``, ``not_responding``,
    ``unknown``; ``absent`` for a server the key manager does not list). ONTAP 9.13+ names
    every node; 9.7 to 9.12 say only whether the whole cluster reaches the server: node
    ``cluster``, or the nodes that do not. ``nodes``: (name, uuid) of every node a 9.13+
    answer named, for reading the keys per node.
    """

    servers: dict[str, dict[str, str]]
    nodes: tuple[tuple[str, str], ...] = ()

    @property
    def reachable(self) -> bool:
        """Whether every server is listed and available from every node."""
        return all(
            states and all(state == AVAILABLE for state in states.values())
            for states in self.servers.values()
        )

    @property
    def unreachable(self) -> bool:
        """Whether some node says it cannot reach a server (rather than not knowing yet)."""
        return any(
            state in (NOT_RESPONDING, ABSENT_STATE)
            for states in self.servers.values()
            for state in states.values()
        )


class TlsContexts:
    """The TLS contexts of one run, each distinct ``tls:`` block built once.

    Per run rather than per process: a long-lived process (a service running many runs)
    must see a CA file or client certificate changed between runs, and must not keep every
    context it ever built.
    """

    __slots__ = ("_built",)

    def __init__(self) -> None:
        """None built yet."""
        self._built: dict[Tls, ssl.SSLContext | bool] = {}

    def __call__(self, tls: Tls) -> ssl.SSLContext | bool:
        """The context for ``tls``, built on first use."""
        context = self._built.get(tls)
        if context is None:
            context = self._built[tls] = ssl_context(tls)
        return context


class OntapClient:
    """One cluster's REST API, over a session of its own (``connect``) or one given."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        cluster: Cluster,
        *,
        gate: Gate,
        read_only: bool,
        tls: TlsContexts | None = None,
    ) -> None:
        """Bind ``session`` to ``cluster``; ``read_only`` lets nothing but GET out.

        The session is the seam tests replace; the engine uses ``connect``, which owns one.
        """
        self._session = session
        connector = session.connector
        self._lanes: AbstractAsyncContextManager[None] = (
            connector.lanes
            if isinstance(connector, _ClusterConnector)
            else contextlib.nullcontext()
        )
        # aiohttp silently sends an "idempotent" request (DELETE among them) a second time
        # when a kept-alive connection drops; a DELETE that was applied would then go out
        # twice. Every failure is ours to settle (read back, retry), so none is resent.
        session._retry_connection = False  # no public switch (aiohttp 3.14)
        self._cluster = cluster
        self._gate = gate
        self._read_only = read_only
        self._base = f"https://{cluster.address}"
        self._ssl = (tls or TlsContexts())(cluster.tls)
        self._timeout = aiohttp.ClientTimeout(total=cluster.limits.timeout)
        self._headers = {"X-Dot-Client-App": USER_AGENT, "Accept": "application/hal+json"}
        if cluster.username is not None and cluster.password is not None:
            token = f"{cluster.username}:{cluster.password.reveal()}".encode()
            encoded = base64.b64encode(token).decode()
            remember(encoded)  # a server echoing our header must not put it in a log or report
            self._headers["Authorization"] = "Basic " + encoded

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, cluster: Cluster, *, gate: Gate, read_only: bool, tls: TlsContexts | None = None
    ) -> AsyncIterator[OntapClient]:
        """A client over a keep-alive session of the cluster's own, closed on the way out.

        A session per cluster, closed when the cluster is done: a run-wide pool would keep
        the connections of finished clusters open, and every TLS connection holds a few
        hundred KiB (asyncio's 256 KiB read buffer, OpenSSL's state). Connections to
        different clusters are never shared anyway. At most ``concurrency`` connections,
        as no more requests are in flight; no proxy or netrc from the environment.
        """
        connector = _ClusterConnector(limit=cluster.limits.concurrency)
        async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
            client = cls(session, cluster, gate=gate, read_only=read_only, tls=tls)
            try:
                yield client
            finally:
                log.debug(
                    "tls_connections",
                    cluster=cluster.name,
                    handshakes=connector.handshakes,
                    resumed=connector.resumed,
                )

    def __repr__(self) -> str:
        """Name the cluster only."""
        return f"OntapClient({self._cluster.name!r})"

    async def version(self) -> OntapVersion:
        """The cluster's ONTAP release."""
        return (await self.identity())[0]

    async def identity(self) -> tuple[OntapVersion, str | None]:
        """The cluster's ONTAP release and uuid (None when it names none), in one GET."""
        body = await self._json("GET", "/api/cluster", params={"fields": "version,uuid"})
        try:
            v = _mapping(_mapping(body)["version"])
            version = OntapVersion(
                int(str(v["generation"])), int(str(v["major"])), int(str(v["minor"]))
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._protocol("GET /api/cluster: no usable version") from exc
        uuid = _mapping(body).get("uuid")
        return version, redact(uuid)[:MAX_UUID] if isinstance(uuid, str) and uuid else None

    async def key_managers(self) -> tuple[LiveKeyManager, ...]:
        """Every key manager of the cluster, following ``_links.next``."""
        records = await self._collection(
            "/api/security/key-managers", {"fields": KEY_MANAGER_FIELDS}
        )
        try:
            return tuple(_key_manager(r) for r in records)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._protocol("GET /api/security/key-managers: malformed record") from exc

    async def svm_names(self) -> frozenset[str]:
        """The names of every SVM of the cluster."""
        records = await self._collection("/api/svm/svms", {"fields": "name"})
        try:
            return frozenset(str(r["name"]) for r in records)
        except (KeyError, TypeError) as exc:
            raise self._protocol("GET /api/svm/svms: malformed record") from exc

    async def key_server_names(self, key_manager_uuid: str) -> frozenset[str]:
        """The primary servers a key manager has now (the read-back after an ambiguous POST)."""
        path = f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}/key-servers"
        records = await self._collection(path, {"fields": "server"})
        try:
            return frozenset(_normalized(str(r["server"])) for r in records)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._protocol(f"GET {path}: malformed record") from exc

    async def add_key_servers(
        self, key_manager_uuid: str, servers: tuple[DesiredServer, ...]
    ) -> None:
        """POST the servers to a key manager (one ``server`` or ``records[]``); wait for its job."""
        path = f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}/key-servers"
        records = [_record(s) for s in servers]
        body = records[0] if len(records) == 1 else {"records": records}
        target = ",".join(s.server for s in servers)
        try:
            status, answer = await self._send("POST", path, body=body, target=target)
        except OntapError as exc:
            exc.sent = not refused(exc)
            raise
        # A 2xx: the cluster took the write. Whatever goes wrong from here, it may be applied.
        if status == 202:
            await self._wait_for_job(answer, target)
        elif status not in (200, 201):
            raise self._protocol(
                f"POST {path}: unexpected HTTP {status}",
                target=target,
                http_status=status,
                sent=True,
            )

    async def remove_key_server(self, key_manager_uuid: str, server: str) -> Removal:
        """DELETE one primary server (never ``force=true``); ``ABSENT`` if ONTAP has it not.

        Every failure is ``sent`` unless it proves a refusal, as a POST's: 65536700 (the
        server alone holds keys in use), 65536600 (a node out of quorum) and 2621573 (the
        SVM locked) are refusals; a lost answer, a 5xx without a known code or an odd
        answer leave the removal's fate unknown (``has_key_server`` settles it).
        """
        path = _key_server_path(key_manager_uuid, server)
        try:
            try:
                status, answer = await self._send("DELETE", path, target=server)
            except OntapError as exc:
                exc.sent = not refused(exc)
                raise
            if status == 202:
                await self._wait_for_job(answer, server)
            elif status != 200:
                raise self._protocol(
                    f"DELETE {_clean(path, 200)}: unexpected HTTP {status}",
                    target=server,
                    http_status=status,
                    sent=True,
                )
        except ApiError as exc:
            if exc.code == NOT_CONFIGURED:
                return Removal.ABSENT
            raise
        return Removal.REMOVED

    async def has_key_server(self, key_manager_uuid: str, server: str) -> bool:
        """Whether a key manager has this primary now (the read-back after a lost DELETE)."""
        path = _key_server_path(key_manager_uuid, server)
        try:
            await self._json("GET", path, params={"fields": "server"})
        except ApiError as exc:
            if exc.http_status == 404 or exc.code == NOT_CONFIGURED:
                return False
            raise
        return True

    async def key_server_states(
        self, key_manager_uuid: str, servers: tuple[str, ...], version: OntapVersion
    ) -> Connectivity:
        """How each node reaches each of ``servers`` (``connectivity``, named to be returned).

        9.13+: ``connectivity.node_states[]`` for every node; 9.7 to 9.12:
        ``connectivity.cluster_availability``, with ``records[]`` naming the nodes that are
        not available. A release before 9.7 shows no connectivity: ProtocolError.
        """
        path = f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}/key-servers"
        if version < CONNECTIVITY_SINCE:
            raise self._protocol(f"ONTAP {version} shows no key-server connectivity")
        records = await self._collection(path, {"fields": "server,connectivity"})
        found: dict[str, dict[str, str]] = {}
        nodes: dict[str, str] = {}
        try:
            for record in records:
                name = _normalized(str(record["server"]))
                connectivity = _part(record.get("connectivity"))
                if version >= NODE_STATES_SINCE:
                    found[name] = _node_states(connectivity, nodes)
                else:
                    found[name] = _cluster_availability(connectivity)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._protocol(f"GET {path}: malformed connectivity ({exc})") from exc
        wanted = {s: found.get(s, {CLUSTER_NODE: ABSENT_STATE}) for s in servers}
        return Connectivity(servers=wanted, nodes=tuple(sorted(nodes.items())))

    async def restore_keys(self, key_manager_uuid: str, server: str) -> None:
        """Restore the key manager's keys from one primary on every node (9.13+; a job).

        Restoring changes no configuration and may be repeated: a failure is retried, not
        read back (whether it worked is what ``keys_restored`` reads).
        """
        path = f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}/restore"
        try:
            status, answer = await self._send(
                "POST", path, body={"key_server": server}, target=server
            )
        except OntapError as exc:
            exc.sent = not refused(exc)
            raise
        if status == 202:
            await self._wait_for_job(answer, server)
        elif status not in (200, 201):
            raise self._protocol(
                f"POST {path}: unexpected HTTP {status}",
                target=server,
                http_status=status,
                sent=True,
            )

    async def keys_restored(
        self, key_manager_uuid: str, node_uuid: str
    ) -> tuple[tuple[str, bool], ...]:
        """The keys of a key manager on one node: (key id, whether ``restored``)."""
        path = (
            f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}"
            f"/keys/{quote(node_uuid, safe='')}/key-ids"
        )
        records = await self._collection(path, {"fields": "key_id,restored"})
        try:
            return tuple(
                (_clean(str(r["key_id"]), 200), r.get("restored") is True) for r in records
            )
        except (KeyError, TypeError) as exc:
            raise self._protocol(f"GET {path}: malformed record") from exc

    async def _wait_for_job(self, answer: object, target: str) -> None:
        """Poll a 202's job until it succeeds; every failure is ``sent`` but a known refusal.

        A poll that fails transiently (a 5xx, a lost answer) says nothing of the job: it is
        polled again until the job's deadline. Reading the key servers back instead, while
        the job may still be running, could miss a server it is about to add.
        """
        try:
            href = str(
                _mapping(_mapping(_mapping(_mapping(answer)["job"])["_links"])["self"])["href"]
            )
        except (KeyError, TypeError) as exc:
            raise self._protocol("202 without a job link", target=target, sent=True) from exc
        delay = JOB_POLL_INITIAL
        deadline = asyncio.get_running_loop().time() + JOB_DEADLINE * self._cluster.limits.timeout
        while True:
            try:
                job = _mapping(
                    await self._json("GET", href, params={"fields": "state,message,code,error"})
                )
            except TypeError as exc:
                raise self._protocol(
                    f"GET {_clean(href, 80)}: the job is not an object", target=target, sent=True
                ) from exc
            except OntapError as exc:
                if isinstance(exc, ApiError) and exc.http_status == 404:
                    raise TransportError(  # the job is gone: whether it applied is unknown
                        "the job vanished before it finished",
                        cluster=self._cluster.name,
                        target=target,
                        sent=True,
                    ) from exc
                left = deadline - asyncio.get_running_loop().time()
                if not is_retryable(exc) or left <= 0:
                    exc.sent = True
                    raise
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, JOB_POLL_MAX)
                continue
            state = job.get("state")
            if state == "success":
                return
            if state == "failure":
                error = _object(job.get("error"))
                code = _code(error.get("code", job.get("code")))
                message = str(error.get("message", job.get("message", "job failed")))
                failed = self._api_error(message, None, code, target)
                failed.sent = not refused(failed)
                raise failed
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise RequestTimeout(
                    "the job did not finish in time",
                    cluster=self._cluster.name,
                    target=target,
                    sent=True,
                )
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, JOB_POLL_MAX)

    async def _collection(self, path: str, params: Mapping[str, str]) -> list[Json]:
        """Every record of a collection, following ``_links.next.href``."""
        records: list[Json] = []
        url: str | None = path
        query: Mapping[str, str] | None = params
        seen: set[str] = set()
        while url is not None:
            try:
                body = _mapping(await self._json("GET", url, params=query))
                page = body.get("records", [])
                if not isinstance(page, list):
                    raise TypeError("records is not a list")
                records += [_mapping(r) for r in page]
                nxt = _part(_part(body.get("_links")).get("next")).get("href")
            except TypeError as exc:
                raise self._protocol(f"GET {path}: malformed collection ({exc})") from exc
            if len(records) > MAX_RECORDS or (nxt is not None and str(nxt) in seen):
                raise self._protocol(f"GET {path}: paging does not end")
            url, query = (str(nxt), None) if nxt else (None, None)
            seen.add(str(nxt))
        return records

    async def _json(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> object:
        """A request whose 2xx answer is returned as parsed JSON."""
        return (await self._send(method, path, params=params))[1]

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        target: str | None = None,
    ) -> tuple[int, object]:
        """Send one request through the gate; a 2xx answer comes back, anything else raises."""
        if self._read_only and method != "GET":
            raise WriteRefused(
                f"{method} refused: this run may only read",
                cluster=self._cluster.name,
                target=target,
            )
        headers = self._headers
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers = {**headers, "Content-Type": "application/json"}
        if not path.startswith("/"):
            raise self._protocol(
                f"refusing a link outside the cluster: {_clean(path, 80)!r}", target=target
            )
        try:
            async with (
                self._gate(),
                self._lanes,
                self._session.request(
                    method,
                    self._base + path,
                    params=params,
                    data=data,
                    headers=headers,
                    ssl=self._ssl,
                    timeout=self._timeout,
                    allow_redirects=False,
                ) as response,
            ):
                raw = await _read_bounded(response)
                status, content_type = response.status, response.content_type
                location = response.headers.get("Location", "")
                wait = None
                if status in RETRY_AFTER_STATUSES:
                    wait = parse_retry_after(response.headers.get("Retry-After"))
        except _TooLarge as exc:
            raise self._protocol(
                f"{method} {path}: answer larger than {MAX_BODY} bytes", target=target
            ) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            raise self._tls(exc, target) from exc
        except aiohttp.ClientSSLError as exc:
            raise self._tls(exc, target) from exc
        except aiohttp.ClientConnectorError as exc:
            raise TransportError(
                f"cannot connect: {exc.os_error.strerror or exc.os_error}",
                cluster=self._cluster.name,
                target=target,
                sent=False,
            ) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise RequestTimeout(
                "timed out connecting", cluster=self._cluster.name, target=target, sent=False
            ) from exc
        except TimeoutError as exc:
            raise RequestTimeout(
                f"no answer within {self._cluster.limits.timeout:g} s",
                cluster=self._cluster.name,
                target=target,
                sent=True,
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TransportError(
                f"connection lost: {type(exc).__name__}",
                cluster=self._cluster.name,
                target=target,
                sent=True,
            ) from exc
        return status, self._answer(
            method=method,
            path=path,
            status=status,
            content_type=content_type,
            raw=raw,
            location=location,
            target=target,
            retry_after=wait,
        )

    def _answer(
        self,
        *,
        method: str,
        path: str,
        status: int,
        content_type: str,
        raw: bytes,
        location: str,
        target: str | None,
        retry_after: float | None = None,
    ) -> object:
        """Turn a received answer into its JSON body, or raise the error it carries."""
        if 300 <= status < 400:
            where = _clean(location)[:120]
            raise self._protocol(
                f"{method} {_clean(path, 200)}: redirect to {where!r} not followed", target=target
            )
        parsed: object = None
        if status == TOO_MANY_REQUESTS and "json" not in content_type:
            raw = b""  # a throttling proxy's page: the status says all there is
        if raw:
            if "json" not in content_type:
                raise self._protocol(
                    f"{method} {_clean(path, 200)}: HTTP {status} "  # a path may be a server's link
                    f"with content type {_clean(content_type)!r}",
                    target=target,
                    http_status=status,
                )
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise self._protocol(
                    f"{method} {_clean(path, 200)}: HTTP {status} with malformed JSON",
                    target=target,
                    http_status=status,
                ) from exc
        if status < 300:
            return {} if parsed is None else parsed
        error = _object(parsed.get("error")) if isinstance(parsed, dict) else {}
        code = _code(error.get("code"))
        message = _clean(str(error.get("message") or f"HTTP {status}"))
        if status in (401, 403):
            raise AuthError(
                "authentication failed" if status == 401 else f"not allowed: {message}",
                cluster=self._cluster.name,
                target=target,
                http_status=status,
                code=code,
            )
        raise self._api_error(message, status, code, target, retry_after=retry_after)

    def _api_error(
        self,
        message: str,
        status: int | None,
        code: str | None,
        target: str | None,
        *,
        retry_after: float | None = None,
    ) -> ApiError:
        """An ONTAP error answer, classified by the retry table."""
        return ApiError(
            _clean(message),
            cluster=self._cluster.name,
            target=target,
            http_status=status,
            code=code,
            category=classify(code, status),
            retry_after=retry_after,
        )

    def _protocol(
        self,
        message: str,
        *,
        target: str | None = None,
        http_status: int | None = None,
        sent: bool = False,
    ) -> ProtocolError:
        """An answer ONTAP would not send."""
        return ProtocolError(
            message, cluster=self._cluster.name, target=target, http_status=http_status, sent=sent
        )

    def _tls(self, exc: Exception, target: str | None) -> TlsError:
        """A certificate that cannot be verified, or a failed handshake."""
        reason = getattr(exc, "certificate_error", None) or getattr(exc, "os_error", None) or exc
        return TlsError(
            f"TLS failed: {_clean(str(reason))}", cluster=self._cluster.name, target=target
        )


class _TooLarge(Exception):
    """An answer longer than ``MAX_BODY``: not read to its end."""


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, unless it is longer than ``MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _key_server_path(key_manager_uuid: str, server: str) -> str:
    """The path of one key server: the uuid and the server each one encoded path segment."""
    return (
        f"/api/security/key-managers/{quote(key_manager_uuid, safe='')}"
        f"/key-servers/{quote(server, safe='')}"
    )


MAX_NODES: Final = 64
"""More nodes than any cluster has (24): a longer list is a server talking."""


def _node_states(connectivity: Json, nodes: dict[str, str]) -> dict[str, str]:
    """9.13+: node name -> state for every node listed; (name, uuid) added to ``nodes``."""
    raw = connectivity.get("node_states") or []
    if not isinstance(raw, list):
        raise TypeError("node_states is not a list")
    states: dict[str, str] = {}
    for entry in raw[:MAX_NODES]:
        node = _mapping(_mapping(entry)["node"])
        name = _clean(str(node.get("name") or node.get("uuid") or "?"), 100)
        states[name] = _clean(str(_mapping(entry).get("state") or "unknown"), 40)
        if isinstance(uuid := node.get("uuid"), str) and uuid:
            nodes[name] = uuid[:MAX_UUID]
    return states


def _cluster_availability(connectivity: Json) -> dict[str, str]:
    """9.7 to 9.12: ``cluster`` available, or the nodes that are not (``cluster`` if none named)."""
    if connectivity.get("cluster_availability") is True:
        return {CLUSTER_NODE: AVAILABLE}
    raw = connectivity.get("records") or []
    if not isinstance(raw, list):
        raise TypeError("records is not a list")
    states: dict[str, str] = {}
    for entry in raw[:MAX_NODES]:
        node = _part(_mapping(entry).get("node"))
        name = _clean(str(node.get("name") or node.get("uuid") or CLUSTER_NODE), 100)
        state = _clean(str(_mapping(entry).get("state") or NOT_RESPONDING), 40)
        # The cluster says not available: a node listed as available does not make it so.
        states[name] = NOT_RESPONDING if state == AVAILABLE else state
    return states or {CLUSTER_NODE: NOT_RESPONDING}


def _record(server: DesiredServer) -> Json:
    """The POST body of one key server."""
    record: Json = {"server": server.server}
    if server.secondary_key_servers:
        record["secondary_key_servers"] = list(server.secondary_key_servers)
    if server.password is not None:
        record["password"] = server.password.reveal()
    return record


def _key_manager(record: Json) -> LiveKeyManager:
    """A key-manager record as discovery keeps it."""
    # Names and ids are the server's words: a hostile one may spell a credential in them,
    # and they reach the plan file, `plan --show-steps` and the report. Masked here, once,
    # so every output and the plan's fingerprint see the same value.
    scope = record.get("scope", "svm")
    svm = None if scope == "cluster" else redact(str(_mapping(record["svm"])["name"]))
    external = record.get("external")
    servers: tuple[str, ...] = ()
    if isinstance(external, dict):
        raw = external.get("servers") or []
        if not isinstance(raw, list):
            raise TypeError("external.servers is not a list")
        servers = tuple(_normalized(redact(str(_mapping(s)["server"]))) for s in raw)
    onboard = _mapping(record.get("onboard") or {}).get("enabled") is True
    return LiveKeyManager(
        uuid=redact(str(record["uuid"])),
        svm=svm,
        external=isinstance(external, dict) and not onboard,
        servers=servers,
    )


def _normalized(server: str) -> str:
    """A live server name in the form desired names take; odd ones kept as they are."""
    try:
        return normalize_server(server)
    except ValueError:
        return server.lower()


def _object(value: object) -> Json:
    """The error object of an error answer, or an empty one: whatever its shape, an error."""
    return value if isinstance(value, dict) else {}


def _part(value: object) -> Json:
    """An optional part of an answer: absent is empty, anything but an object is TypeError."""
    return {} if value is None else _mapping(value)


def _mapping(value: object) -> Json:
    """``value`` as a JSON object, or TypeError."""
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


MAX_CODE: Final = 16
"""ONTAP's codes are numbers of up to 8 digits; anything longer is a server talking."""


def _clean(text: str, limit: int = MAX_MESSAGE) -> str:
    """A server-supplied string made safe to log and keep: every form of a known secret
    masked (before it is cut, so that no part of one is left), at most ``limit``
    characters, control characters replaced."""
    cut = redact(text)[:limit]
    cleaned = "".join(ch if ch.isprintable() else "\N{REPLACEMENT CHARACTER}" for ch in cut)
    return redact(cleaned)  # a secret holding U+FFFD could be made by the replacement


def _code(value: object) -> str | None:
    """A server-supplied error code, cleaned like a message and cut to ``MAX_CODE``."""
    return None if value is None else _clean(str(value), MAX_CODE)
