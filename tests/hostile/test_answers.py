"""``OntapClient`` against a hostile server over real TLS: every odd answer is a typed error.

Each answer here is one ONTAP does not send. The client must turn it into the most specific
``OntapError`` (never another exception, which would end the whole run), read at most
16 MiB of it, give up when the request timeout says so, follow no redirect and no link off
the cluster, and keep server-supplied text from driving a terminal.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from aiohttp import web

from bulkkm.errors import (
    ApiError,
    ErrorCategory,
    OntapError,
    ProtocolError,
    RequestTimeout,
    TransportError,
)
from bulkkm.inventory import DesiredServer
from bulkkm.ontap import MAX_BODY, MAX_RECORDS, OntapClient
from tests.hostile._server import (
    CLUSTER_KM,
    HAL,
    KM_PATH,
    Handler,
    HostileServer,
    Pki,
    RawServer,
    client_for,
    json_answer,
)

KS_PATH = f"{KM_PATH}/{CLUSTER_KM}/key-servers"
SERVER = (DesiredServer(server="kms-new.example.com:5696"),)


def client(server: HostileServer, pki: Pki, session: aiohttp.ClientSession) -> OntapClient:
    """A client for the hostile server, TLS verified, 2 s per request."""
    return client_for(session, server.address, pki.ca_file, timeout=2.0)


@pytest.mark.parametrize(
    "body",
    [b'{"version": {"generation": 9, ', b"[" * 100_000, b"\xff\xfe{}", b'{"a": NaN}'],
    ids=["truncated", "nested-100k-deep", "not-utf8", "nan"],
)
async def test_malformed_json_is_a_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, body: bytes
) -> None:
    """A 200 whose body is not JSON is a permanent protocol error, not a crash."""
    server.answer("GET", "/api/cluster", 200, body)
    with pytest.raises(ProtocolError, match="malformed JSON") as caught:
        await client(server, pki, session).version()
    assert caught.value.category is ErrorCategory.PERMANENT
    assert caught.value.http_status == 200


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/html", b"<html><body>Please log in</body></html>"),
        ("text/plain", b'{"version": {"generation": 9, "major": 14, "minor": 1}}'),
        ("application/octet-stream", b"\x00\x01\x02"),
    ],
)
async def test_wrong_content_type_is_a_protocol_error(
    server: HostileServer,
    pki: Pki,
    session: aiohttp.ClientSession,
    content_type: str,
    body: bytes,
) -> None:
    """An answer that is not JSON by its content type is refused, even when it would parse."""
    server.answer("GET", "/api/cluster", 200, body, content_type=content_type)
    with pytest.raises(ProtocolError, match="content type"):
        await client(server, pki, session).version()


def stream(
    server: HostileServer,
    *,
    chunk: bytes,
    pause: float,
    limit: int,
    sent: list[int],
    stopped: asyncio.Event | None = None,
) -> Handler:
    """A handler that streams ``chunk`` every ``pause`` s, up to ``limit`` bytes; counts them.

    ``stopped`` is set once it writes no more (the client hung up, or the limit was reached).
    """

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": HAL})
        await response.prepare(request)
        try:
            while sent[0] < limit and not server.closing.is_set():
                await response.write(chunk)
                sent[0] += len(chunk)
                await asyncio.sleep(pause)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what this test wants
        finally:
            if stopped is not None:
                stopped.set()
        return response

    return handler


async def test_huge_answer_is_refused_without_reading_it_all(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A 1 GiB answer ends in an OntapError soon after 16 MiB, the rest never read."""
    sent = [0]
    stopped = asyncio.Event()
    server.on(
        "GET",
        "/api/cluster",
        stream(server, chunk=b" " * (1 << 20), pause=0, limit=1 << 30, sent=sent, stopped=stopped),
    )
    async with asyncio.timeout(30):  # reading the whole GiB would take far longer
        with pytest.raises(OntapError):
            await client(server, pki, session).version()
        await stopped.wait()  # the server has noticed the client hang up
    # Socket buffers let the server write a little past the limit, never the whole GiB.
    assert MAX_BODY < sent[0] < 4 * MAX_BODY


async def test_huge_answer_is_a_permanent_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """An answer past 16 MiB is an answer ONTAP does not send: permanent, not retried."""
    sent = [0]
    server.on(
        "GET",
        "/api/cluster",
        stream(server, chunk=b" " * (1 << 20), pause=0, limit=1 << 30, sent=sent),
    )
    with pytest.raises(ProtocolError, match="larger than") as caught:
        await client(server, pki, session).version()
    assert caught.value.category is ErrorCategory.PERMANENT


async def test_answer_that_never_ends_is_ended_by_the_request_timeout(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A chunked body that trickles forever ends at the request timeout, as a timeout."""
    sent = [0]
    server.on(
        "GET",
        "/api/cluster",
        stream(server, chunk=b" ", pause=0.02, limit=1 << 30, sent=sent),
    )
    started = time.monotonic()
    async with asyncio.timeout(30):  # without a request timeout it would trickle forever
        with pytest.raises(RequestTimeout) as caught:
            await client_for(session, server.address, pki.ca_file, timeout=0.5).version()
    # Not before the timeout: a lower bound does not depend on the machine's speed.
    assert time.monotonic() - started >= 0.4  # (timers may fire a clock tick early)
    assert caught.value.category is ErrorCategory.TIMEOUT
    assert sent[0] > 0  # the body had started: only the timeout could end it


@pytest.mark.parametrize(
    "reply",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/json\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not-http", "huge-header", "short-body", "bad-chunk"],
)
async def test_broken_http_is_a_transport_error(
    pki: Pki, session: aiohttp.ClientSession, reply: bytes
) -> None:
    """An answer that is not valid HTTP ends as a (retryable) transport error, not a crash."""
    async with RawServer(pki.context(), reply) as raw:
        with pytest.raises(TransportError) as caught:
            await client_for(session, raw.address, pki.ca_file).version()
    assert caught.value.category is ErrorCategory.TRANSPORT


async def test_silent_server_times_out_at_the_request_timeout(
    pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A port that accepts and then says nothing (not even TLS) ends at the request timeout."""
    async with RawServer(pki.context(), None) as raw:
        started = time.monotonic()
        async with asyncio.timeout(30):  # without a request timeout it would wait forever
            with pytest.raises(RequestTimeout):
                await client_for(session, raw.address, pki.ca_file, timeout=0.5).version()
    assert time.monotonic() - started >= 0.4  # ended by the timeout, not by the server


@pytest.mark.parametrize(
    ("status", "category"),
    [
        (400, ErrorCategory.PERMANENT),
        (409, ErrorCategory.PERMANENT),
        (500, ErrorCategory.TRANSIENT),
    ],
)
async def test_error_without_code_is_classified_by_status(
    server: HostileServer,
    pki: Pki,
    session: aiohttp.ClientSession,
    status: int,
    category: ErrorCategory,
) -> None:
    """An error document without ``code`` keeps its message; its status alone classifies it."""
    server.answer("POST", KS_PATH, status, {"error": {"message": "something went wrong"}})
    with pytest.raises(ApiError) as caught:
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)
    assert caught.value.code is None
    assert caught.value.http_status == status
    assert caught.value.category is category
    assert caught.value.message == "something went wrong"


@pytest.mark.parametrize(
    "body",
    [{"error": {}}, {"error": None}, {"message": "no error object"}, [], "just a string"],
)
async def test_error_without_an_error_document_still_names_the_status(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, body: object
) -> None:
    """A 400 with no usable error document is an ApiError saying the HTTP status."""
    server.answer("POST", KS_PATH, 400, body)
    with pytest.raises(ApiError, match="HTTP 400"):
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)


@pytest.mark.parametrize("error", ["a string", ["a", "list"], 42])
async def test_error_that_is_not_an_object_is_still_an_ontap_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, error: object
) -> None:
    """``{"error": "..."}`` (not an object) is an error answer like any other."""
    server.answer("POST", KS_PATH, 400, {"error": error})
    with pytest.raises(OntapError):
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"records": [1, 2]},
        {"records": ["svm_a"]},
        {"records": [], "_links": "next"},
        {"records": [], "_links": {"next": "/api/security/key-managers?page=2"}},
    ],
    ids=["list", "int-records", "str-records", "str-links", "str-next"],
)
async def test_malformed_collection_is_a_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, body: object
) -> None:
    """A collection of the wrong shape is a ProtocolError, never a TypeError."""
    server.answer("GET", KM_PATH, 200, body)
    with pytest.raises(ProtocolError):
        await client(server, pki, session).key_managers()


@pytest.mark.parametrize(
    "body",
    [
        {"records": "not a list"},
        {"records": [{"uuid": "x", "scope": "svm"}]},
        {"records": [{"uuid": "x", "scope": "svm", "svm": "not an object"}]},
        {"records": [{"uuid": "x", "scope": "cluster", "external": {"servers": "kms"}}]},
        {"records": [{"uuid": "x", "scope": "cluster", "external": {"servers": [{}]}}]},
    ],
    ids=["records-str", "no-svm", "svm-str", "servers-str", "server-missing"],
)
async def test_malformed_key_manager_record_is_a_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, body: object
) -> None:
    """Records missing what discovery needs are a ProtocolError naming the call."""
    server.answer("GET", KM_PATH, 200, body)
    with pytest.raises(ProtocolError, match="key-managers"):
        await client(server, pki, session).key_managers()


@pytest.mark.parametrize(
    "job", [["running"], {"state": "failure", "error": "not an object"}], ids=["list", "error-str"]
)
async def test_malformed_job_is_a_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, job: object
) -> None:
    """A 202 whose polled job is malformed ends as an OntapError."""
    href = "/api/cluster/jobs/j1"
    server.answer("POST", KS_PATH, 202, {"job": {"uuid": "j1", "_links": {"self": {"href": href}}}})
    server.answer("GET", href, 200, job)
    with pytest.raises(OntapError):
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)


async def test_200_instead_of_201_is_accepted_as_created(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A POST answered 200 (not the documented 201) counts as done: a 2xx is success."""
    server.answer("POST", KS_PATH, 200, {})
    await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)
    assert [s.method for s in server.seen] == ["POST"]


@pytest.mark.parametrize("status", [204, 206, 299])
async def test_other_2xx_to_a_post_is_a_protocol_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, status: int
) -> None:
    """A 2xx that is neither 200, 201 nor 202 is not taken as done."""
    server.answer("POST", KS_PATH, status, b"" if status == 204 else b"{}")
    with pytest.raises(ProtocolError, match=f"HTTP {status}"):
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_redirect_is_never_followed(
    server: HostileServer,
    elsewhere: HostileServer,
    pki: Pki,
    session: aiohttp.ClientSession,
    status: int,
    method: str,
) -> None:
    """A redirect to another host is an error; that host gets no request, no credential."""
    target = f"https://{elsewhere.address}/api/cluster"
    path = "/api/cluster" if method == "GET" else KS_PATH
    server.answer(method, path, status, {}, headers={"Location": target})
    c = client(server, pki, session)
    call = c.version() if method == "GET" else c.add_key_servers(CLUSTER_KM, SERVER)
    with pytest.raises(ProtocolError, match="redirect") as caught:
        await call
    assert elsewhere.address in caught.value.message
    assert elsewhere.seen == []
    assert len(server.seen) == 1


@pytest.mark.parametrize("form", ["absolute", "scheme-relative"])
async def test_next_link_never_leaves_the_cluster(
    server: HostileServer,
    elsewhere: HostileServer,
    pki: Pki,
    session: aiohttp.ClientSession,
    form: str,
) -> None:
    """A ``_links.next.href`` naming another host is refused or stays on the cluster."""
    href = f"//{elsewhere.address}{KM_PATH}?page=2"
    if form == "absolute":
        href = "https:" + href
    server.answer("GET", KM_PATH, 200, {"records": [], "_links": {"next": {"href": href}}})
    c = client(server, pki, session)
    if form == "absolute":
        with pytest.raises(ProtocolError, match="outside the cluster"):
            await c.key_managers()
    else:
        # The path is resolved against the cluster: the hostile server gets it, 404s it.
        with pytest.raises(ApiError):
            await c.key_managers()
        assert server.seen[-1].path.startswith(f"//{elsewhere.address}")
    assert elsewhere.seen == []


@pytest.mark.parametrize("loop", ["self", "forever"])
async def test_paging_that_never_ends_is_an_error(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, loop: str
) -> None:
    """A next link that loops, or that never runs out, ends discovery with an error."""
    pages = [0]
    # A thousand records a page: a cap on pages or records is reached within seconds.
    records = [
        {"uuid": f"km-{n}", "scope": "svm", "svm": {"name": f"svm{n}"}, "external": {"servers": []}}
        for n in range(1000)
    ]

    async def page(request: web.BaseRequest) -> web.StreamResponse:
        pages[0] += 1
        href = request.raw_path if loop == "self" else f"{KM_PATH}?page={pages[0]}"
        return json_answer(200, {"records": records, "_links": {"next": {"href": href}}})

    server.on("GET", KM_PATH, page)
    async with asyncio.timeout(60):
        with pytest.raises(ProtocolError):
            await client(server, pki, session).key_managers()
    # A loop is seen at its first repeat; endless pages stop at the cap on records.
    assert pages[0] <= (2 if loop == "self" else MAX_RECORDS // len(records) + 1), pages[0]


async def test_job_that_never_finishes_ends_as_a_timeout(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A 202 whose job stays running is given up on, as a write of unknown fate."""
    href = "/api/cluster/jobs/j1"
    server.answer("POST", KS_PATH, 202, {"job": {"uuid": "j1", "_links": {"self": {"href": href}}}})
    server.answer("GET", href, 200, {"uuid": "j1", "state": "running"})
    async with asyncio.timeout(30):  # without the job's deadline it would poll forever
        with pytest.raises(RequestTimeout) as caught:
            await client_for(session, server.address, pki.ca_file, timeout=0.5).add_key_servers(
                CLUSTER_KM, SERVER
            )
    assert caught.value.sent
    polls = [s for s in server.seen if s.method == "GET" and s.path.startswith(href)]
    assert len(polls) >= 2  # the job was polled, more than once, before it was given up on


@pytest.mark.parametrize(
    "uuid", ["../../cluster", "a/b?c=d#e", "x\r\nX-Injected: 1", "%2e%2e%2fsvm"]
)
async def test_key_manager_uuid_from_the_server_cannot_escape_its_path(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession, uuid: str
) -> None:
    """A uuid discovered from the server is one encoded path segment, whatever it holds."""

    async def created(_request: web.BaseRequest) -> web.StreamResponse:
        return json_answer(201, {})

    server.fallback = created
    await client(server, pki, session).add_key_servers(uuid, SERVER)
    (seen,) = server.seen
    prefix, _, rest = seen.path.partition(f"{KM_PATH}/")
    assert prefix == ""
    segment, _, tail = rest.partition("/")
    assert tail == "key-servers"
    assert not set(segment) & set("/?#\r\n")
    assert "X-Injected" not in seen.headers


async def test_server_text_cannot_drive_a_terminal(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """Control characters in an error message are replaced before the message goes anywhere."""
    message = "\x1b[2J\x1b[31mred\x1b[0m\nbulkkm: forged log line\r\x07\x9b\u202e"
    server.answer("POST", KS_PATH, 400, {"error": {"message": message, "code": "65536999"}})
    with pytest.raises(ApiError) as caught:
        await client(server, pki, session).add_key_servers(CLUSTER_KM, SERVER)
    assert caught.value.message.isprintable()
    assert str(caught.value).isprintable()
    assert "forged log line" in caught.value.message


async def test_odd_names_in_key_manager_records_are_kept_as_data(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """SVM and server names with control characters come back unchanged (the report escapes)."""
    svm = "svm\x1b[31m\nred"
    server.key_managers = [
        {
            "uuid": "km-odd",
            "scope": "svm",
            "svm": {"name": svm, "uuid": "s1"},
            "external": {"servers": [{"server": "kms\x07\n.example.com:5696"}]},
        }
    ]
    (km,) = await client(server, pki, session).key_managers()
    assert km.svm == svm
    assert km.servers == ("kms\x07\n.example.com:5696",)


async def test_read_back_tolerates_odd_existing_server_names(
    server: HostileServer, pki: Pki, session: aiohttp.ClientSession
) -> None:
    """The read-back finds our server even beside an entry that is not a valid host name."""
    server.answer(
        "GET",
        KS_PATH,
        200,
        {"records": [{"server": "legacy kms (old)"}, {"server": "kms-new.example.com:5696"}]},
    )
    names = await client(server, pki, session).key_server_names(CLUSTER_KM)
    assert "kms-new.example.com:5696" in names
