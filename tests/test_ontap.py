"""The ONTAP client: what it sends, and how every answer maps to a typed error."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses import CallbackResult

from bulkkm.errors import (
    ApiError,
    AuthError,
    ErrorCategory,
    OntapError,
    ProtocolError,
    RequestTimeout,
    TransportError,
    WriteRefused,
)
from bulkkm.inventory import Cluster, DesiredServer, Limits, Tls
from bulkkm.ontap import USER_AGENT, OntapClient, Removal, TlsContexts
from bulkkm.secret import Secret
from bulkkm.state import OntapVersion
from tests.mock_http import OntapMock, reply

BASE = "https://10.0.0.1:443"
KS = f"{BASE}/api/security/key-managers/km1/key-servers"
CLUSTER = Cluster(
    name="c1",
    host="10.0.0.1",
    username="admin",
    password=Secret("hunter2-sentinel", source="env:X"),
)


@contextlib.asynccontextmanager
async def _open() -> AsyncIterator[None]:
    """A gate that admits everything."""
    yield


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """One client session per test."""
    async with aiohttp.ClientSession() as s:
        yield s


def client(session: aiohttp.ClientSession, *, read_only: bool = False) -> OntapClient:
    """A client for CLUSTER."""
    return OntapClient(session, CLUSTER, gate=_open, read_only=read_only)


def error_body(code: str, message: str = "nope") -> dict[str, object]:
    """An ONTAP error answer."""
    return {"error": {"code": code, "message": message, "target": "server"}}


async def test_post_sends_one_server_with_identity_and_basic_auth(
    session: aiohttp.ClientSession,
) -> None:
    """A single server goes as `server`, with its KMIP password, our app header and basic auth."""
    seen: dict[str, object] = {}

    def capture(url: object, **kwargs: object) -> CallbackResult:
        seen.update(kwargs)
        return reply(201, {"num_records": 1})

    with OntapMock() as mock:
        mock.post(KS, callback=capture)
        server = DesiredServer(
            server="kms:5696",
            secondary_key_servers=("kms2:5696",),
            password=Secret("kmip-pw", source="env:K"),
        )
        await client(session).add_key_servers("km1", (server,))
    assert orjson.loads(seen["data"]) == {  # type: ignore[arg-type]
        "server": "kms:5696",
        "secondary_key_servers": ["kms2:5696"],
        "password": "kmip-pw",
    }
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Dot-Client-App"] == USER_AGENT
    assert headers["Authorization"].startswith("Basic ")


async def test_several_servers_go_as_records(session: aiohttp.ClientSession) -> None:
    """Two servers for one key manager are one POST with `records`."""
    seen: dict[str, object] = {}

    def capture(url: object, **kwargs: object) -> CallbackResult:
        seen.update(kwargs)
        return reply(201, {})

    with OntapMock() as mock:
        mock.post(KS, callback=capture)
        servers = (DesiredServer(server="a:5696"), DesiredServer(server="b:5696"))
        await client(session).add_key_servers("km1", servers)
    assert orjson.loads(seen["data"]) == {"records": [{"server": "a:5696"}, {"server": "b:5696"}]}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code", "category"),
    [
        (400, "65536038", ErrorCategory.PRECONDITION),
        (400, "65536828", ErrorCategory.PRECONDITION),
        (400, "65536870", ErrorCategory.PERMANENT),
        (400, "65536871", ErrorCategory.PERMANENT),
        (500, "65536921", ErrorCategory.TRANSIENT),
        (500, "65536834", ErrorCategory.TRANSIENT),
        (500, "65536852", ErrorCategory.TRANSIENT),
        (400, "2621573", ErrorCategory.TRANSIENT),
        (400, "66060338", ErrorCategory.TLS),
        (400, "66060339", ErrorCategory.TLS),
        (400, "66060340", ErrorCategory.TRANSIENT),
        (500, "1", ErrorCategory.TRANSIENT),
        (404, "4", ErrorCategory.PERMANENT),
    ],
)
async def test_ontap_error_answers_become_classified_api_errors(
    session: aiohttp.ClientSession, status: int, code: str, category: ErrorCategory
) -> None:
    """Each ONTAP error code maps to its category, keeping the code and HTTP status."""
    with OntapMock() as mock:
        mock.post(KS, status=status, payload=error_body(code), content_type="application/hal+json")
        with pytest.raises(ApiError) as caught:
            await client(session).add_key_servers("km1", (DesiredServer(server="a:5696"),))
    assert (caught.value.code, caught.value.http_status, caught.value.category) == (
        code,
        status,
        category,
    )
    assert caught.value.cluster == "c1"


@pytest.mark.parametrize("status", [401, 403])
async def test_bad_credentials_are_auth_errors(session: aiohttp.ClientSession, status: int) -> None:
    """401 and 403 are `auth`, and the message carries no credential."""
    with OntapMock() as mock:
        mock.get(re.compile(r".*/api/cluster.*"), status=status, payload=error_body("6"))
        with pytest.raises(AuthError) as caught:
            await client(session).version()
    assert caught.value.category is ErrorCategory.AUTH
    assert "hunter2-sentinel" not in str(caught.value)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {"status": 200, "body": "{not json", "content_type": "application/json"},
            "malformed JSON",
        ),
        ({"status": 200, "body": "<html>", "content_type": "text/html"}, "content type"),
        ({"status": 302, "headers": {"Location": "https://evil.example/"}}, "not followed"),
        ({"status": 500, "body": "", "content_type": "application/json"}, None),
    ],
)
async def test_answers_ontap_would_not_send_are_protocol_errors(
    session: aiohttp.ClientSession, answer: dict[str, object], expected: str | None
) -> None:
    """Bad JSON, a wrong content type and a redirect are refused; an empty 500 is transient."""
    with OntapMock() as mock:
        mock.get(re.compile(r".*/api/cluster.*"), **answer)
        with pytest.raises((ProtocolError, ApiError)) as caught:
            await client(session).version()
    if expected is None:
        assert caught.value.category is ErrorCategory.TRANSIENT
    else:
        assert isinstance(caught.value, ProtocolError)
        assert expected in str(caught.value)


async def test_lost_connection_after_sending_is_marked_possibly_applied(
    session: aiohttp.ClientSession,
) -> None:
    """A dropped connection is a transport error flagged `sent`: the engine must read back."""
    with OntapMock() as mock:
        mock.post(KS, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(TransportError) as caught:
            await client(session).add_key_servers("km1", (DesiredServer(server="a:5696"),))
    assert caught.value.sent
    assert caught.value.category is ErrorCategory.TRANSPORT


async def test_timeout_is_its_own_category(session: aiohttp.ClientSession) -> None:
    """No answer in time is a `timeout` error."""
    with OntapMock() as mock:
        mock.get(re.compile(r".*/api/cluster.*"), exception=TimeoutError())
        with pytest.raises(RequestTimeout) as caught:
            await client(session).version()
    assert caught.value.category is ErrorCategory.TIMEOUT


async def test_read_only_client_refuses_writes_before_sending(
    session: aiohttp.ClientSession,
) -> None:
    """A dry run cannot POST: refused in the client, nothing reaches the network."""
    with OntapMock() as mock:
        with pytest.raises(WriteRefused):
            await client(session, read_only=True).add_key_servers(
                "km1", (DesiredServer(server="a:5696"),)
            )
        assert not mock.requests


async def test_collections_follow_next_links(session: aiohttp.ClientSession) -> None:
    """Key managers come from every page of the collection."""
    page1 = {
        "records": [
            {
                "uuid": "u1",
                "scope": "svm",
                "svm": {"name": "s1"},
                "external": {"servers": [{"server": "KMS:5696"}]},
            }
        ],
        "_links": {"next": {"href": "/api/security/key-managers?start=2"}},
    }
    page2 = {"records": [{"uuid": "u2", "scope": "cluster", "onboard": {"enabled": True}}]}
    with OntapMock() as mock:
        mock.get(re.compile(r".*/api/security/key-managers\?fields.*"), payload=page1)
        mock.get(re.compile(r".*/api/security/key-managers\?start=2$"), payload=page2)
        kms = await client(session).key_managers()
    assert [(k.uuid, k.svm, k.external, k.servers) for k in kms] == [
        ("u1", "s1", True, ("kms:5696",)),
        ("u2", None, False, ()),
    ]


async def test_accepted_post_waits_for_its_job(session: aiohttp.ClientSession) -> None:
    """A 202 is polled until the job ends; a failed job is an ApiError with its code."""
    job = {"job": {"uuid": "j1", "_links": {"self": {"href": "/api/cluster/jobs/j1"}}}}
    with OntapMock() as mock:
        mock.post(KS, status=202, payload=job)
        mock.get(re.compile(r".*/api/cluster/jobs/j1.*"), payload={"state": "running"})
        mock.get(re.compile(r".*/api/cluster/jobs/j1.*"), payload={"state": "success"})
        await client(session).add_key_servers("km1", (DesiredServer(server="a:5696"),))
        mock.post(KS, status=202, payload=job)
        mock.get(
            re.compile(r".*/api/cluster/jobs/j1.*"),
            payload={"state": "failure", "error": {"code": "65536921", "message": "KMIP"}},
        )
        with pytest.raises(ApiError) as caught:
            await client(session).add_key_servers("km1", (DesiredServer(server="a:5696"),))
    assert caught.value.code == "65536921"


async def test_version_is_parsed(session: aiohttp.ClientSession) -> None:
    """/api/cluster's version becomes an ordered OntapVersion."""
    with OntapMock() as mock:
        mock.get(
            re.compile(r".*/api/cluster.*"),
            payload={"version": {"full": "x", "generation": 9, "major": 13, "minor": 1}},
        )
        assert await client(session).version() == OntapVersion(9, 13, 1)


def test_client_repr_shows_no_credential() -> None:
    """Neither repr nor the cluster's repr carries the password."""
    assert "hunter2-sentinel" not in repr(CLUSTER)


ONE = (DesiredServer(server="a:5696"),)
REFUSED_KEY: Any = None
"""aiohttp's connection key, which its error only uses to describe itself."""
JOB = {"job": {"uuid": "j1", "_links": {"self": {"href": "/api/cluster/jobs/j1"}}}}
JOB_URL = re.compile(r".*/api/cluster/jobs/j1.*")


@pytest.mark.parametrize(
    ("status", "code", "sent"),
    [
        (400, "65536038", False),
        (500, "65536921", False),
        (409, "2621573", False),
        (400, "65536870", False),
        (500, "13", True),
        (500, None, True),
        (400, "262179", True),
        (404, "4", True),
    ],
)
async def test_post_error_is_sent_unless_its_code_proves_a_refusal(
    session: aiohttp.ClientSession, status: int, code: str | None, sent: bool
) -> None:
    """Only ONTAP's known refusal codes prove nothing was applied; any other error may have."""
    payload = error_body(code) if code else {}
    with OntapMock() as mock:
        mock.post(KS, status=status, payload=payload, content_type="application/hal+json")
        with pytest.raises(ApiError) as caught:
            await client(session).add_key_servers("km1", ONE)
    assert caught.value.sent is sent


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 201, "body": '{"num_records": 1, "rec', "content_type": "application/json"},
        {"status": 201, "body": "<html>Created</html>", "content_type": "text/html"},
        {"status": 204, "body": ""},
        {"status": 202, "payload": {"job": {"uuid": "j1"}}},
        {"status": 202, "payload": {}},
        {"status": 302, "headers": {"Location": "/elsewhere"}},
    ],
    ids=["201-bad-json", "201-html", "204", "202-no-link", "202-no-job", "302"],
)
async def test_odd_answer_to_a_post_leaves_its_fate_unknown(
    session: aiohttp.ClientSession, answer: dict[str, object]
) -> None:
    """An answer ONTAP would not send to a POST is a ProtocolError marked `sent`: read back."""
    with OntapMock() as mock:
        mock.post(KS, **answer)
        with pytest.raises(ProtocolError) as caught:
            await client(session).add_key_servers("km1", ONE)
    assert caught.value.sent


@pytest.mark.parametrize(
    ("exception", "sent"),
    [
        (aiohttp.ClientConnectorError(REFUSED_KEY, OSError(111, "refused")), False),
        (aiohttp.ServerDisconnectedError(), True),
        (TimeoutError(), True),
    ],
    ids=["refused", "dropped", "timeout"],
)
async def test_post_that_never_connected_is_not_sent(
    session: aiohttp.ClientSession, exception: Exception, sent: bool
) -> None:
    """A refused connection sent nothing; a dropped or late answer may have applied."""
    with OntapMock() as mock:
        mock.post(KS, exception=exception)
        with pytest.raises(TransportError) as caught:
            await client(session).add_key_servers("km1", ONE)
    assert caught.value.sent is sent


async def test_job_poll_failing_transiently_is_polled_again(
    session: aiohttp.ClientSession,
) -> None:
    """A 500 on a job poll says nothing of the job: it is polled again until it succeeds."""
    with OntapMock() as mock:
        mock.post(KS, status=202, payload=JOB)
        mock.get(JOB_URL, status=500, payload=error_body("13"))
        mock.get(JOB_URL, exception=aiohttp.ServerDisconnectedError())
        mock.get(JOB_URL, payload={"state": "success"})
        await client(session).add_key_servers("km1", ONE)
        polls = [key for key in mock.requests if key[0] == "GET"]
    assert sum(len(mock.requests[key]) for key in polls) == 3


@pytest.mark.parametrize(
    ("answers", "error"),
    [
        ([{"status": 500, "payload": error_body("13"), "repeat": True}], ApiError),
        ([{"status": 401, "payload": error_body("6")}], AuthError),
        ([{"status": 404, "payload": error_body("4")}], TransportError),
        ([{"status": 200, "body": "[1]", "content_type": "application/json"}], ProtocolError),
        ([{"payload": {"state": "failure", "error": {"message": "odd"}}}], ApiError),
    ],
    ids=["500-until-the-deadline", "401", "vanished", "not-an-object", "failure-without-code"],
)
async def test_job_that_cannot_be_followed_leaves_the_write_unknown(
    session: aiohttp.ClientSession, answers: list[dict[str, object]], error: type[Exception]
) -> None:
    """Polls failing to the job's deadline, refused, a vanished or odd job: fate unknown."""
    quick = dataclasses.replace(CLUSTER, limits=Limits(timeout=0.1))  # the job's deadline: 0.4 s
    with OntapMock() as mock:
        mock.post(KS, status=202, payload=JOB)
        for answer in answers:
            mock.get(JOB_URL, **answer)
        with pytest.raises(error) as caught:
            await OntapClient(session, quick, gate=_open, read_only=False).add_key_servers(
                "km1", ONE
            )
    assert isinstance(caught.value, OntapError)
    assert caught.value.sent


async def test_job_failing_with_a_known_code_is_a_refusal(
    session: aiohttp.ClientSession,
) -> None:
    """A job that fails with one of ONTAP's refusal codes applied nothing: not `sent`."""
    with OntapMock() as mock:
        mock.post(KS, status=202, payload=JOB)
        mock.get(JOB_URL, payload={"state": "failure", "error": {"code": "65536038"}})
        with pytest.raises(ApiError) as caught:
            await client(session).add_key_servers("km1", ONE)
    assert (caught.value.code, caught.value.sent) == ("65536038", False)


async def test_identity_asks_for_the_uuid_with_the_version(
    session: aiohttp.ClientSession,
) -> None:
    """One GET of /api/cluster names the version and the cluster's uuid."""
    with OntapMock() as mock:
        mock.get(
            re.compile(r".*/api/cluster\?fields=version(,|%2C)uuid$"),
            payload={"uuid": "c-1", "version": {"generation": 9, "major": 14, "minor": 1}},
        )
        assert await client(session).identity() == (OntapVersion(9, 14, 1), "c-1")
        mock.get(
            re.compile(r".*/api/cluster.*"),
            payload={"uuid": 7, "version": {"generation": 9, "major": 14, "minor": 1}},
        )
        assert await client(session).identity() == (OntapVersion(9, 14, 1), None)


async def test_connect_owns_a_session_and_closes_it() -> None:
    """``connect`` opens the cluster's own session; once the block ends, it is closed."""
    with OntapMock() as mock:
        version = {"version": {"generation": 9, "major": 13, "minor": 1}}
        mock.get(re.compile(r".*/api/cluster.*"), payload=version)
        async with OntapClient.connect(CLUSTER, gate=_open, read_only=False) as own:
            assert await own.version() == OntapVersion(9, 13, 1)
    with pytest.raises(RuntimeError, match="closed"):
        await own.version()


def test_tls_contexts_are_built_once_per_run() -> None:
    """One run's cache builds a ``tls:`` block once; another run builds its own."""
    tls = Tls()
    contexts = TlsContexts()
    assert contexts(tls) is contexts(tls)
    assert TlsContexts()(tls) is not contexts(tls)
    assert TlsContexts()(Tls(verify=False)) is False


@pytest.mark.parametrize(
    ("status", "header", "body", "retry_after"),
    [
        (429, "7", {"error": {"message": "slow down"}}, 7.0),
        (429, None, {"error": {"message": "slow down"}}, None),
        (429, "2", "<html>Too Many Requests</html>", 2.0),
        (503, "3", {"error": {"message": "busy"}}, 3.0),
        (500, "3", {"error": {"message": "oops"}}, None),
        (429, "Thu, 01 Jan 2015 00:00:00 GMT", {"error": {"message": "later"}}, 0.0),
    ],
    ids=["429", "429-no-header", "429-not-json", "503", "500-ignored", "429-past-date"],
)
async def test_throttling_answers_carry_their_retry_after(
    session: aiohttp.ClientSession,
    status: int,
    header: str | None,
    body: object,
    retry_after: float | None,
) -> None:
    """A 429 (any body) or 503 is transient and keeps its Retry-After; its write is unknown."""
    # aioresponses takes the content type from ``headers`` once they are given.
    json = not isinstance(body, str)
    headers = {"Content-Type": "application/hal+json" if json else "text/html"}
    if header is not None:
        headers["Retry-After"] = header
    answer: dict[str, Any] = {"payload": body} if json else {"body": body}
    with OntapMock() as mock:
        mock.post(KS, status=status, headers=headers, **answer)
        with pytest.raises(ApiError) as caught:
            await client(session).add_key_servers("km1", ONE)
    assert caught.value.category is ErrorCategory.TRANSIENT
    assert caught.value.retry_after == retry_after
    assert caught.value.sent  # no ONTAP code proves a refusal: read back before resending


# -- migrations: DELETE, connectivity, restore, keys ---------------------------------------

SERVER = "[fd20::1]:5696"
ONE_SERVER = f"{KS}/%5Bfd20%3A%3A1%5D%3A5696"
"""The key server's own path: the server is one percent-encoded segment."""
RECENT = OntapVersion(9, 14)
OLDER = OntapVersion(9, 10)


async def test_delete_sends_the_server_as_one_segment_and_never_force(
    session: aiohttp.ClientSession,
) -> None:
    """DELETE of one server: its name encoded as one path segment, no query; 200 is removed."""
    with OntapMock() as mock:
        mock.delete(ONE_SERVER, payload={})
        assert await client(session).remove_key_server("km1", SERVER) is Removal.REMOVED
        ((method, url),) = mock.requests
    assert method == "DELETE"
    assert url.parts[-2:] == ("key-servers", SERVER)  # the server is one segment
    assert not url.query


async def test_delete_of_a_server_not_configured_is_absent(
    session: aiohttp.ClientSession,
) -> None:
    """65536843 is a result (already gone), not an error; so is its job's failure with it."""
    job = {"job": {"uuid": "j1", "_links": {"self": {"href": "/api/cluster/jobs/j1"}}}}
    with OntapMock() as mock:
        mock.delete(ONE_SERVER, status=404, payload=error_body("65536843"))
        assert await client(session).remove_key_server("km1", SERVER) is Removal.ABSENT
        mock.delete(ONE_SERVER, status=202, payload=job)
        mock.get(
            re.compile(r".*/api/cluster/jobs/j1.*"),
            payload={"state": "failure", "error": {"code": "65536843", "message": "gone"}},
        )
        assert await client(session).remove_key_server("km1", SERVER) is Removal.ABSENT


@pytest.mark.parametrize(
    ("status", "code", "category", "sent"),
    [
        (400, "65536700", ErrorCategory.PERMANENT, False),  # the only holder of keys in use
        (400, "65536600", ErrorCategory.TRANSIENT, False),  # a node out of quorum
        (409, "2621573", ErrorCategory.TRANSIENT, False),  # the SVM locked
        (500, None, ErrorCategory.TRANSIENT, True),  # a 5xx without a known code: unknown
        (500, "13", ErrorCategory.TRANSIENT, True),
    ],
)
async def test_delete_errors_are_classified_and_sent_unless_refused(
    session: aiohttp.ClientSession,
    status: int,
    code: str | None,
    category: ErrorCategory,
    sent: bool,
) -> None:
    """65536700 permanent, 65536600/2621573 transient refusals; anything else may have applied."""
    with OntapMock() as mock:
        mock.delete(ONE_SERVER, status=status, payload=error_body(code) if code else {})
        with pytest.raises(ApiError) as caught:
            await client(session).remove_key_server("km1", SERVER)
    assert caught.value.category is category
    assert caught.value.sent is sent
    assert caught.value.code == code


async def test_delete_whose_answer_is_lost_is_sent(session: aiohttp.ClientSession) -> None:
    """A dropped DELETE is `sent`: the engine reads the server back before anything else.

    (That aiohttp itself does not send it again is shown end to end, over real sockets, by
    tests/engine/test_migrate.py: a resent DELETE would make a removed server `absent`.)
    """
    with OntapMock() as mock:
        mock.delete(ONE_SERVER, exception=aiohttp.ServerDisconnectedError())
        with pytest.raises(TransportError) as caught:
            await client(session).remove_key_server("km1", SERVER)
    assert caught.value.sent


async def test_read_only_client_refuses_a_delete_and_a_restore(
    session: aiohttp.ClientSession,
) -> None:
    """plan, check and --dry-run cannot DELETE or restore: refused before the network."""
    with OntapMock() as mock:
        with pytest.raises(WriteRefused):
            await client(session, read_only=True).remove_key_server("km1", SERVER)
        with pytest.raises(WriteRefused):
            await client(session, read_only=True).restore_keys("km1", SERVER)
        assert not mock.requests


async def test_reading_one_server_back_says_whether_it_is_there(
    session: aiohttp.ClientSession,
) -> None:
    """GET of the key server: 200 is there, 404 is gone; another error is raised."""
    with OntapMock() as mock:
        mock.get(re.compile(r".*/key-servers/%5Bfd20.*"), payload={"server": SERVER})
        assert await client(session).has_key_server("km1", SERVER) is True
        mock.get(re.compile(r".*/key-servers/%5Bfd20.*"), status=404, payload=error_body("4"))
        assert await client(session).has_key_server("km1", SERVER) is False
        mock.get(re.compile(r".*/key-servers/%5Bfd20.*"), status=500, payload=error_body("13"))
        with pytest.raises(ApiError):
            await client(session).has_key_server("km1", SERVER)


def node(name: str, state: str) -> dict[str, object]:
    """One entry of ``node_states`` (or of 9.7's ``records``)."""
    return {"node": {"name": name, "uuid": f"uuid-{name}"}, "state": state}


async def test_connectivity_names_every_node_from_9_13(session: aiohttp.ClientSession) -> None:
    """9.13+: node -> state for every node, the nodes' uuids kept; absent servers say so."""
    records = [
        {
            "server": "A:5696",
            "connectivity": {"node_states": [node("n1", "available"), node("n2", "unknown")]},
        },
        {"server": "b:5696", "connectivity": {"node_states": [node("n1", "available")]}},
    ]
    with OntapMock() as mock:
        mock.get(re.compile(r".*/key-servers\?fields=server.connectivity$"), payload={
            "records": records
        })  # fmt: skip
        seen = await client(session).key_server_states(
            "km1", ("a:5696", "b:5696", "c:5696"), RECENT
        )
    assert seen.servers == {
        "a:5696": {"n1": "available", "n2": "unknown"},
        "b:5696": {"n1": "available"},
        "c:5696": {"cluster": "absent"},
    }
    assert seen.nodes == (("n1", "uuid-n1"), ("n2", "uuid-n2"))
    assert not seen.reachable
    assert seen.unreachable  # c is not there at all


@pytest.mark.parametrize(
    ("connectivity", "states", "reachable"),
    [
        ({"cluster_availability": True}, {"cluster": "available"}, True),
        (
            {"cluster_availability": False, "records": [node("n2", "not_responding")]},
            {"n2": "not_responding"},
            False,
        ),
        ({"cluster_availability": False}, {"cluster": "not_responding"}, False),
        ({}, {"cluster": "not_responding"}, False),
    ],
    ids=["available", "one-node-down", "no-node-named", "no-connectivity"],
)
async def test_connectivity_before_9_13_is_the_cluster_s_availability(
    session: aiohttp.ClientSession,
    connectivity: dict[str, object],
    states: dict[str, str],
    reachable: bool,
) -> None:
    """9.7 to 9.12: ``cluster_availability``, with the nodes that are not available named."""
    with OntapMock() as mock:
        mock.get(
            re.compile(r".*/key-servers\?fields=.*"),
            payload={"records": [{"server": "a:5696", "connectivity": connectivity}]},
        )
        seen = await client(session).key_server_states("km1", ("a:5696",), OLDER)
    assert seen.servers == {"a:5696": states}
    assert seen.reachable is reachable


async def test_restore_posts_the_server_and_waits_for_its_job(
    session: aiohttp.ClientSession,
) -> None:
    """POST .../restore with ``key_server``: 202, the job polled until it succeeds."""
    job = {"job": {"uuid": "j9", "_links": {"self": {"href": "/api/cluster/jobs/j9"}}}}
    seen: dict[str, Any] = {}

    def capture(url: object, **kwargs: Any) -> CallbackResult:
        seen.update(orjson.loads(kwargs["data"]))
        return reply(202, job)

    with OntapMock() as mock:
        mock.post(f"{BASE}/api/security/key-managers/km1/restore", callback=capture)
        mock.get(re.compile(r".*/api/cluster/jobs/j9.*"), payload={"state": "running"})
        mock.get(re.compile(r".*/api/cluster/jobs/j9.*"), payload={"state": "success"})
        await client(session).restore_keys("km1", SERVER)
    assert seen == {"key_server": SERVER}


async def test_keys_per_node_say_whether_each_is_restored(
    session: aiohttp.ClientSession,
) -> None:
    """The keys of one node: (key id, restored); a key without ``restored`` is not restored."""
    records = [
        {"key_id": "k1", "restored": True},
        {"key_id": "k2", "restored": False},
        {"key_id": "k3"},
    ]
    with OntapMock() as mock:
        mock.get(
            re.compile(r".*/key-managers/km1/keys/node%201/key-ids\?fields=key_id.restored$"),
            payload={"records": records},
        )
        keys = await client(session).keys_restored("km1", "node 1")
    assert keys == (("k1", True), ("k2", False), ("k3", False))
