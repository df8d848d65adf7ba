"""No credential in any output: a sentinel in every secret slot, every output searched for it.

The slots: cluster passwords from ``env:`` and ``file:``, a rejected password, KMIP
passwords from ``env:`` and ``file:``. The paths: successes, retries, lost connections,
ambiguous writes, 401s, TLS failures, an unexpected exception with its traceback, a server
that echoes what it was sent; JSON and console logs at -v and -vv; plan, check, dry runs,
resume, summaries.
Each sentinel is searched for as written and as HTTP basic auth carries it (base64).
"""

from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from bulkkm.errors import ApiError, AuthError, OntapError
from bulkkm.inventory import DesiredServer, load_inventory
from bulkkm.secret import Secret
from bulkkm.simulator import Faults, SimulatedFleet
from tests.cli import bulkkm
from tests.engine.conftest import fleet_spec
from tests.hostile._server import (
    KM_PATH,
    HostileServer,
    Pki,
    client_for,
    encoded_forms,
    json_answer,
    svm_km,
)

CLUSTER_ENV = "SENTINEL-cluster-env-9f3a1c"
CLUSTER_FILE = "SENTINEL-cluster-file-47be20"
REJECTED = "SENTINEL-rejected-c0ffee"
KMIP_ENV = "SENTINEL-kmip-env-5e11a7"
KMIP_FILE = "SENTINEL-kmip-file-81d9b4"
SENTINELS = (CLUSTER_ENV, CLUSTER_FILE, REJECTED, KMIP_ENV, KMIP_FILE)
ENV = {"BULKKM_T_CLUSTER_PW": CLUSTER_ENV, "BULKKM_T_BAD_PW": REJECTED, "BULKKM_T_KMIP": KMIP_ENV}


def forms(secret: str) -> Iterator[str]:
    """The sentinel as written, and inside HTTP basic auth (alone and after ``admin:``)."""
    yield secret
    for raw in (f"admin:{secret}", secret):
        yield base64.b64encode(raw.encode()).decode()


def assert_no_secret(text: str, where: str) -> None:
    """No sentinel, in any form, in ``text``."""
    for secret in SENTINELS:
        for form in forms(secret):
            assert form not in text, f"{where} shows {secret} (as {form!r})"


def write_inventory(tmp_path: Path, fleet: SimulatedFleet, rogue_ca: Path) -> Path:
    """Every secret slot filled with a sentinel; clusters set up to fail in every way.

    The fleet's clusters get the passwords the inventory gives them, but the third
    (``rejected``: 401) and the fourth (``bad-tls``: a CA that did not sign the cluster).
    """
    for sim, password in zip(fleet.clusters, (CLUSTER_ENV, CLUSTER_FILE), strict=False):
        sim.password = password
    for sim in fleet.clusters[2:]:
        sim.password = CLUSTER_ENV
    (tmp_path / "cluster.pw").write_text(CLUSTER_FILE + "\n")
    (tmp_path / "kmip.pw").write_text(KMIP_FILE + "\n")
    c = [sim.address for sim in fleet.clusters]
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:BULKKM_T_CLUSTER_PW\n"
        f"  tls: {{ca_file: {fleet.ca_file}}}\n"
        "  limits: {timeout: 1}\n"
        "  key_servers:\n"
        "    - {server: kms-new.example.com, password: env:BULKKM_T_KMIP}\n"
        "clusters:\n"
        f"  - {{name: env-pw, address: '{c[0]}', svms: all, cluster_scope: true}}\n"
        f"  - name: file-pw\n    address: '{c[1]}'\n    svms: all\n"
        "    password: file:cluster.pw\n"
        "    key_servers:\n"
        "      - {server: kms-file.example.com, password: file:kmip.pw}\n"
        f"  - {{name: rejected, address: '{c[2]}', svms: all, password: env:BULKKM_T_BAD_PW}}\n"
        f"  - {{name: bad-tls, address: '{c[3]}', svms: all, tls: {{ca_file: {rogue_ca}}}}}\n"
        f"  - {{name: flaky, address: '{c[4]}', svms: all, cluster_scope: true}}\n"
    )
    return path


async def test_no_secret_in_any_output_of_any_command(pki: Pki, tmp_path: Path) -> None:
    """apply/plan/check/dry-run/resume/validate/summarize, JSON and console, -v and -vv."""
    # Real CLI runs retry with the default policy (backoff from 0.5 s): a little trouble goes
    # a long way, so it is kept to the two runs that write the most.
    flaky = Faults(transient_rate=0.2, reset_rate=0.1, ambiguous_rate=0.2, error500_rate=0.05)
    spec = fleet_spec(
        clusters=5,
        svms=2,
        seed=13,
        initial_servers=0,
        cluster_faults={"sim-0004": flaky},
    )
    rogue = tmp_path / "rogue-ca.pem"
    pki.rogue.cert_pem.write_to_path(str(rogue))
    async with SimulatedFleet(spec) as fleet:
        inventory = str(write_inventory(tmp_path, fleet, rogue))
        reports: list[Path] = []

        def report(name: str) -> str:
            reports.append(tmp_path / name)
            return str(reports[-1])

        runs = [
            ("apply", inventory, "--report", report("a1.jsonl"), "--log-format", "json", "-v"),
            ("apply", inventory, "--report", report("a2.jsonl"), "--log-format", "console", "-vv"),
            ("apply", inventory, "--report", report("a3.jsonl"), "--resume", str(reports[0]),
             "--log-format", "json", "-vv"),
            ("apply", inventory, "--report", report("d.jsonl"), "--dry-run", "--log-format",
             "console", "-vv"),
            ("plan", inventory, "--log-format", "console", "-vv"),
            ("check", inventory, "--report", report("c.jsonl"), "--log-format", "json", "-vv"),
            ("validate", inventory, "-vv"),
            ("report", "summarize", str(reports[1])),
            ("report", "summarize", str(reports[2]), "--json"),
        ]  # fmt: skip
        outputs: list[str] = []
        for number, args in enumerate(runs):
            if number == 2:
                fleet.set_faults("sim-0004", Faults())
            code, out, err = await bulkkm(*args, env=ENV)
            where = " ".join(args[:2])
            assert code in (0, 1, 4), f"{where}: exit {code}: {err[-2000:]}"
            assert_no_secret(out, f"{where} stdout")
            assert_no_secret(err, f"{where} stderr")
            outputs.append(err)
        # The failure paths this test is about were taken.
        text = "\n".join(outputs)
        assert "authentication failed" in text
        assert "TLS failed" in text
        assert "retry_scheduled" in text
    for path in reports:
        assert_no_secret(path.read_text(), path.name)
        assert oct(path.stat().st_mode & 0o777) == "0o600", path.name


FORCED_CRASH = """
import sys
import aiohttp
from bulkkm.cli import main

_original = aiohttp.ClientSession._request

async def _request(self, method, url, **kwargs):
    if method == "POST":
        raise RuntimeError("forced: an exception nobody expected")
    return await _original(self, method, url, **kwargs)

aiohttp.ClientSession._request = _request
sys.exit(main(sys.argv[1:]))
"""
"""Runs the CLI with aiohttp raising a RuntimeError on the first POST, inside
``OntapClient._send``, whose frame holds the Authorization header and the body with the
KMIP password."""


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_traceback_of_an_unexpected_exception_shows_no_secret(
    pki: Pki, tmp_path: Path, fmt: str
) -> None:
    """A bug's traceback (an exception escaping the engine) carries no credential."""
    rogue = tmp_path / "rogue-ca.pem"
    pki.rogue.cert_pem.write_to_path(str(rogue))
    async with SimulatedFleet(fleet_spec(clusters=5, svms=1, seed=2)) as fleet:
        inventory = write_inventory(tmp_path, fleet, rogue)
        report = tmp_path / "r.jsonl"
        code, out, err = await bulkkm(
            "apply", str(inventory), "--report", str(report), "--log-format", fmt, "-vv",
            env=ENV, entry=("-c", FORCED_CRASH),
        )  # fmt: skip
    assert code != 0
    # The traceback path was taken, from inside the POST.
    assert "forced: an exception nobody expected" in err
    assert "add_key_servers" in err
    assert_no_secret(out, "stdout")
    assert_no_secret(err, "stderr")
    if report.exists():
        assert_no_secret(report.read_text(), "report")
        assert oct(report.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize("echo", ["body", "authorization"])
async def test_server_echoing_a_credential_does_not_put_it_in_the_report(
    pki: Pki, tmp_path: Path, echo: str
) -> None:
    """A server quoting the request (KMIP password, auth header) in its error: report clean."""
    async with HostileServer(pki.context()) as server:

        async def echoing(request: web.BaseRequest) -> web.StreamResponse:
            seen = server.seen[-1]
            quoted = seen.body.decode() if echo == "body" else seen.headers.get("Authorization", "")
            return json_answer(400, {"error": {"message": f"Invalid input: {quoted}", "code": "1"}})

        server.on("POST", f"{KM_PATH}/{svm_km(1)}/key-servers", echoing)
        path = tmp_path / "fleet.yaml"
        path.write_text(
            "version: 1\n"
            "defaults:\n"
            "  username: admin\n"
            "  password: env:BULKKM_T_CLUSTER_PW\n"
            f"  tls: {{ca_file: {pki.ca_file}}}\n"
            "  key_servers:\n"
            "    - {server: kms-new.example.com, password: env:BULKKM_T_KMIP}\n"
            f"clusters:\n  - {{name: echo, address: '{server.address}', svms: all}}\n"
        )
        report = tmp_path / "r.jsonl"
        code, out, err = await bulkkm(
            "apply", str(path), "--report", str(report), "--log-format", "json", "-vv", env=ENV
        )
    assert code == 1, err
    lines = [orjson.loads(raw) for raw in report.read_bytes().splitlines()]
    assert [t["outcome"] for t in lines if t["type"] == "target"] == ["failed"]
    assert_no_secret(report.read_text(), "report")
    assert_no_secret(out + err, "output")


def test_loaded_inventory_shows_no_secret_and_cannot_be_pickled(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """repr of the inventory and its clusters has no credential; pickling one is refused."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "fleet.yaml"
    (tmp_path / "cluster.pw").write_text(CLUSTER_FILE + "\n")
    (tmp_path / "kmip.pw").write_text(KMIP_FILE + "\n")
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:BULKKM_T_CLUSTER_PW\n"
        f"  tls: {{ca_file: {pki.ca_file}}}\n"
        "  key_servers:\n"
        "    - {server: kms-new.example.com, password: env:BULKKM_T_KMIP}\n"
        "    - {server: kms-file.example.com, password: file:kmip.pw}\n"
        "clusters:\n"
        "  - {name: a, address: 10.0.0.1, svms: all}\n"
        "  - {name: b, address: 10.0.0.2, svms: all, password: file:cluster.pw}\n"
    )
    inventory = load_inventory(path)
    assert_no_secret(repr(inventory), "repr(inventory)")
    assert_no_secret(str(inventory), "str(inventory)")
    for cluster in inventory.clusters:
        with pytest.raises(TypeError, match="pickle"):
            pickle.dumps(cluster)


ECHO_CLUSTER = 'Echo"pw\\é/+ :=\x1b[0m%41🔑-7c1d'
ECHO_KMIP = "kmip'\"\\ü/+&=?\x07ß-9e4b"
ECHO_ENV = {"BULKKM_E_CLUSTER": ECHO_CLUSTER, "BULKKM_E_KMIP": ECHO_KMIP}
ECHO_TOKEN = base64.b64encode(f"admin:{ECHO_CLUSTER}".encode()).decode()
ECHOED = (ECHO_CLUSTER, ECHO_KMIP, f"admin:{ECHO_CLUSTER}", ECHO_TOKEN, f"Basic {ECHO_TOKEN}")
"""What an echoing server quotes back: both passwords and the Authorization header, whole,
its token and ``user:password``."""
WINDOW = 10
"""A run of this many characters of an encoded secret in an output is a leak (a prefix a
length cap left behind, a fragment a partial mask left)."""


def _strings(value: object) -> Iterator[str]:
    """Every string inside a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def decoded(text: str) -> str:
    """``text``, and the strings of every line of it that is JSON, decoded."""
    parts = [text]
    for line in text.splitlines():
        try:
            parts.extend(_strings(orjson.loads(line)))
        except orjson.JSONDecodeError:
            continue
    return "\n".join(parts)


def assert_no_echoed_secret(text: str, where: str, secrets: tuple[str, ...] = ECHOED) -> None:
    """No form of an echoed credential, nor a run of ``WINDOW`` characters of one, in
    ``text`` (as written, and as decoded from JSON lines)."""
    text = decoded(text)
    for secret in secrets:
        for form in encoded_forms(secret):
            for start in range(max(1, len(form) - WINDOW + 1)):
                piece = form[start : start + WINDOW]
                assert piece not in text, (
                    f"{where} shows {secret!r} as {form!r}: ...{piece!r}... at "
                    f"{text[max(0, text.find(piece) - 60) :][:160]!r}"
                )


async def echo_servers(pki: Pki) -> list[HostileServer]:
    """Four clusters quoting the credentials back in every field: a 400 to the POST, a job
    failing after a 202, a 403 to the version, a 401 to the key managers."""
    servers = [HostileServer(pki.context()) for _ in range(4)]
    for server in servers:
        await server.__aenter__()
    post_400, job, forbidden, unauthorized = servers
    post_400.echo_credentials("POST", f"{KM_PATH}/{svm_km(1)}/key-servers", 400)
    job.echo_credentials("POST", f"{KM_PATH}/{svm_km(1)}/key-servers", 202)
    forbidden.echo_credentials("GET", "/api/cluster", 403)
    unauthorized.echo_credentials("GET", KM_PATH, 401)
    return servers


def echo_inventory(tmp_path: Path, pki: Pki, servers: list[HostileServer]) -> Path:
    """Every cluster of ``servers`` with the echoed passwords."""
    names = ("post-400", "job-failure", "forbidden", "unauthorized")
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:BULKKM_E_CLUSTER\n"
        f"  tls: {{ca_file: {pki.ca_file}}}\n"
        "  limits: {timeout: 2}\n"
        "  key_servers:\n"
        "    - {server: kms-new.example.com, password: env:BULKKM_E_KMIP}\n"
        "clusters:\n"
        + "".join(
            f"  - {{name: {name}, address: '{server.address}', svms: all}}\n"
            for name, server in zip(names, servers, strict=True)
        )
    )
    return path


async def test_credentials_echoed_in_every_field_and_encoding_reach_no_output(
    pki: Pki, tmp_path: Path
) -> None:
    """A server quoting the passwords and the Authorization header in code, message, target
    and arguments, in every encoding (400, a failed job, 403, 401): apply in JSON and console
    logs at -v, plan and check, and ``report summarize`` (text and JSON) show none of it."""
    servers = await echo_servers(pki)
    try:
        inventory = str(echo_inventory(tmp_path, pki, servers))
        first, second, audit = (tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl"))
        runs = [
            ("apply", inventory, "--report", str(first), "--log-format", "json", "-v"),
            ("apply", inventory, "--report", str(second), "--log-format", "console", "-v"),
            ("plan", inventory, "--log-format", "console", "-v"),
            ("check", inventory, "--report", str(audit), "--log-format", "json", "-v"),
            ("report", "summarize", str(first)),
            ("report", "summarize", str(second), "--json"),
        ]
        for args in runs:
            code, out, err = await bulkkm(*args, env=ECHO_ENV)
            where = " ".join(args[:2])
            assert code in (0, 1, 4), f"{where}: exit {code}: {err[-2000:]}"
            assert_no_echoed_secret(out, f"{where} stdout")
            assert_no_echoed_secret(err, f"{where} stderr")
    finally:
        for server in servers:
            await server.__aexit__(None, None, None)
    for report in (first, second, audit):
        assert_no_echoed_secret(report.read_text(), report.name)
    # Every echoing path was taken: the masked answers are in the report.
    lines = [orjson.loads(raw) for raw in first.read_bytes().splitlines()]
    errors = {line["cluster"]: line["error"] for line in lines if line.get("error")}
    assert set(errors) == {"post-400", "job-failure", "forbidden", "unauthorized"}
    assert errors["post-400"]["message"].startswith("Invalid input: Basic ********")
    assert errors["job-failure"]["message"].startswith("Invalid input: Basic ********")
    assert errors["forbidden"]["message"].startswith("not allowed: Invalid input: Basic *****")
    assert all(len(error["code"]) <= 16 for error in errors.values())


async def test_echoed_code_and_message_are_cleaned_redacted_and_capped(
    server: HostileServer, session: aiohttp.ClientSession, pki: Pki
) -> None:
    """The client's errors carry no form of a credential in any field, a code of at most 16
    characters and a message of at most 500, however long the server's."""
    password = 'client"pw\\é\x1b-4f2a'
    server.echo_credentials("POST", f"{KM_PATH}/{svm_km(1)}/key-servers", 400)
    server.echo_credentials("POST", f"{KM_PATH}/{svm_km(2)}/key-servers", 202)
    server.echo_credentials("GET", KM_PATH, 403)
    client = client_for(session, server.address, pki.ca_file, password=password)
    kmip = DesiredServer(server="kms.example.com:5696", password=Secret(ECHO_KMIP, source="x"))
    failures: list[OntapError] = []
    for uuid in (svm_km(1), svm_km(2)):
        with pytest.raises(ApiError) as api:
            await client.add_key_servers(uuid, (kmip,))
        failures.append(api.value)
    with pytest.raises(AuthError) as auth:
        await client.key_managers()
    failures.append(auth.value)
    token = base64.b64encode(f"admin:{password}".encode()).decode()
    for error in failures:
        assert error.code is not None
        assert len(error.code) <= 16
        assert len(error.message) <= 500
        assert "********" in error.message
        shown = f"{error}\n{error.message}\n{error.code}\n{error.target}"
        assert_no_echoed_secret(shown, repr(error), (password, ECHO_KMIP, token, f"Basic {token}"))


@pytest.mark.parametrize("fmt", ["json", "console"])
async def test_a_one_letter_password_masks_no_word_of_the_output(
    server: HostileServer, pki: Pki, tmp_path: Path, fmt: str
) -> None:
    """A KMIP password ``k``: ``target_blocked``, ``kms-new.example.com`` and every other word
    containing a ``k`` reach the logs intact; nothing is masked where no secret stands."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:BULKKM_T_CLUSTER_PW\n"
        f"  tls: {{ca_file: {pki.ca_file}}}\n"
        "  key_servers:\n"
        "    - {server: kms-new.example.com, password: env:BULKKM_S_KMIP}\n"
        f"clusters:\n  - {{name: kilo, address: '{server.address}', svms: [svm_a, svm_kilo]}}\n"
    )
    code, out, err = await bulkkm(
        "apply", str(path), "--report", str(tmp_path / "r.jsonl"), "--log-format", fmt, "-v",
        env={**ENV, "BULKKM_S_KMIP": "k"},
    )  # fmt: skip
    assert code == 1, err
    assert "target_blocked" in err
    assert "kms-new.example.com" in err
    assert "kilo" in err
    assert "********" not in out + err
