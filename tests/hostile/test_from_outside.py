"""Secrets a hostile cluster echoes into places added recently: the plan file and ``plan
--show``, the report's ids, the audit's accounting. Each test drives the CLI as a user does
and searches every output for the credentials in every form a server can echo them in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson

from bulkkm import codec
from bulkkm.events import ClusterDiscovered, Outcome, RunFinished, TargetResult, Verified
from bulkkm.inventory import DesiredServer, load_inventory
from bulkkm.plan import Action, Decision
from bulkkm.planfile import PlanWriter
from bulkkm.secret import Secret
from bulkkm.state import LiveKeyManager
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


def test_report_lines_mask_a_key_manager_id_that_quotes_a_secret() -> None:
    """The report's last line of defence masks ``key_manager_uuid`` of target and verify
    lines, as it does SVM names: ``report summarize`` runs in a process that knows no secret."""
    Secret(ECHO_KMIP, source="env:BULKKM_E_KMIP")
    now = datetime.now(UTC)
    target = TargetResult(
        cluster="c", svm=None, key_manager_uuid=f"km-{ECHO_KMIP}", server="kms:5696",
        outcome=Outcome.WOULD_ADD, started_at=now, finished_at=now,
    )  # fmt: skip
    verify = Verified(
        cluster="c", svm="s", key_manager_uuid=ECHO_KMIP, servers={}, passed=True, duration_ms=1
    )
    for event in (target, verify):
        line = codec.report_line(event)
        assert line is not None
        assert "********" in str(line["key_manager_uuid"])
        assert_no_echoed_secret(codec.dumps_line(line).decode(), type(event).__name__)


def test_a_plan_file_masks_what_discovery_named_after_a_secret(tmp_path: Path) -> None:
    """Whatever reaches the plan writer (a key manager's id, its SVM, its servers, a blocked
    server's why) is written masked: ``plan --show`` cannot mask what it does not know."""
    (tmp_path / "fleet.yaml").write_text(
        "version: 1\nallow_plaintext_secrets: true\n"
        "defaults: {username: admin, password: x, key_servers: [kms.example.com]}\n"
        "clusters:\n  - {name: c, address: 10.0.0.1, svms: all}\n"
    )
    inventory = load_inventory(tmp_path / "fleet.yaml")
    Secret(ECHO_CLUSTER, source="env:BULKKM_E_CLUSTER")
    path = tmp_path / "p.json"
    writer = PlanWriter.create(path, inventory, datetime.now(UTC))
    live = LiveKeyManager(
        uuid=ECHO_CLUSTER, svm=f"svm {ECHO_CLUSTER}", external=True, servers=(ECHO_CLUSTER,)
    )
    decisions = tuple(
        Decision(
            cluster="c", svm=live.svm, key_manager_uuid=live.uuid,
            desired=DesiredServer(server=server), action=action, detail=f"why {ECHO_CLUSTER}",
        )
        for server, action in (("kms.example.com:5696", Action.ADD), ("b:5696", Action.BLOCKED))
    )  # fmt: skip
    writer(ClusterDiscovered(cluster="c", version="9.14.1", targets=2, key_managers=(live,),
                             decisions=decisions))  # fmt: skip
    writer(RunFinished(finished_at=datetime.now(UTC), duration_ms=1, counts={},
                       clusters_failed=0, exit_code=0, aborted=False))  # fmt: skip
    written = path.read_text()
    assert orjson.loads(written)["clusters"][0]["key_managers"][0]["add"]
    assert_no_echoed_secret(written, "the plan file")
