"""Secrets a hostile cluster echoes into places added recently: the plan file and ``plan
--show``, the report's ids, the audit's accounting. Each test drives the CLI as a user does
and searches every output for the credentials in every form a server can echo them in."""

from __future__ import annotations

from pathlib import Path

from tests.cli import bulkkm
from tests.hostile._server import CLUSTER_KM, HostileServer, Pki
from tests.hostile.test_secrets import ECHO_CLUSTER, ECHO_ENV, ECHO_KMIP, assert_no_echoed_secret


def _inventory(tmp_path: Path, pki: Pki, server: HostileServer) -> Path:
    """One cluster on ``server``, both echoed passwords in the inventory."""
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
        f"clusters:\n  - {{name: echo, address: '{server.address}', svms: all,"
        " cluster_scope: true}\n"
    )
    return path


def _name_everything_after_the_secrets(server: HostileServer) -> None:
    """Key-manager uuids, SVM names and live key-server names that quote the credentials."""
    cluster, svm = server.key_managers
    cluster["uuid"] = f"{CLUSTER_KM}-{ECHO_CLUSTER}"
    cluster["external"] = {"servers": [{"server": ECHO_KMIP}]}
    svm["uuid"] = ECHO_KMIP
    svm["svm"] = {"name": f"svm {ECHO_CLUSTER}", "uuid": "svm-1"}
    svm["external"] = {"servers": [{"server": f"kms-{ECHO_CLUSTER}.example.com"}]}


async def test_names_and_ids_a_server_makes_of_a_secret_reach_no_plan_or_report(
    pki: Pki, tmp_path: Path
) -> None:
    """A cluster answering key managers whose uuid, SVM name and key-server names quote the
    passwords: ``plan --out``, ``plan --show``, ``check --report``, ``report summarize`` (text
    and JSON) show none of it."""
    async with HostileServer(pki.context()) as server:
        _name_everything_after_the_secrets(server)
        inventory = str(_inventory(tmp_path, pki, server))
        plan, audit = tmp_path / "p.json", tmp_path / "c.jsonl"
        runs: list[tuple[str, ...]] = [
            ("plan", inventory, "--out", str(plan), "--log-format", "json", "-v"),
            ("check", inventory, "--report", str(audit), "--log-format", "json", "-v"),
            ("plan", inventory, "--show-steps", "--log-format", "console", "-v"),
        ]
        for args in runs:
            code, out, err = await bulkkm(*args, env=ECHO_ENV)
            assert code in (0, 1, 4), f"{args[0]}: exit {code}: {err[-2000:]}"
            assert_no_echoed_secret(out, f"{args[0]} stdout")
            assert_no_echoed_secret(err, f"{args[0]} stderr")
    assert plan.exists()
    assert_no_echoed_secret(plan.read_text(), "the plan file")
    assert_no_echoed_secret(audit.read_text(), "the audit report")
    reads: list[tuple[str, ...]] = [
        ("plan", "--show", str(plan)),
        ("report", "summarize", str(audit)),
        ("report", "summarize", str(audit), "--json", "--all"),
    ]
    for args in reads:
        code, out, err = await bulkkm(*args)
        assert code == 0, err
        assert_no_echoed_secret(out + err, " ".join(args[:2]))
