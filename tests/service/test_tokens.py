"""Tokens: each scope allowed and refused where it should be, only hashes stored, none logged."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bulkkm.service._tokens import Scope
from tests.engine.conftest import fleet_spec
from tests.service.conftest import DONE, Harness, harness

# (method, path, body) -> the scopes that may call it
READS = [("GET", "/api/v1/inventories"), ("GET", "/api/v1/runs"), ("GET", "/api/v1/runs/{id}")]
ALLOWED = {
    "read": {"read", "operate", "approve", "admin"},
    "operate": {"operate", "admin"},
    "approve": {"approve", "admin"},
}


async def _try(h: Harness, who: str, method: str, path: str, body: object = None) -> int:
    """The status one token gets."""
    return (await h.clients[who].call(method, path, body)).status


async def test_each_scope_is_allowed_and_refused_where_it_should_be(tmp_path: Path) -> None:
    """read reads; operate starts, cancels, retries; approve approves; admin does all; 403 else."""
    async with harness(tmp_path, fleet_spec(clusters=2, svms=1, initial_servers=0)) as h:
        start = {"inventory": "fleet.yaml", "command": "apply"}
        for who in Scope:
            status = await _try(h, who, "POST", "/api/v1/runs", start)
            assert (status == 201) == (who in ALLOWED["operate"]), (who, status)
        runs = (await h.admin.get("/api/v1/runs")).body["runs"]
        for run in runs:
            await h.admin.until(run["id"], "awaiting_approval")
        for who in Scope:
            for method, path in READS:
                status = await _try(h, who, method, path.format(id=runs[0]["id"]))
                assert status == 200, (who, path, status)
        # approve: approve and admin only (operate may not approve what it started)
        for who, run in zip(Scope, runs * 2, strict=False):
            plan_hash = (await h.admin.run(run["id"]))["plan_hash"]
            status = await _try(
                h, who, "POST", f"/api/v1/runs/{run['id']}/approve", {"plan_hash": plan_hash}
            )
            expected = 202 if who in ALLOWED["approve"] else 403
            assert status == expected or (status == 409 and expected == 202), (who, status)
        approved = [r for r in runs if (await h.admin.run(r["id"]))["approved_by"]]
        assert approved
        for run in runs:
            await h.admin.until(run["id"], *DONE, "awaiting_approval")
        # cancel and retry: operate and admin
        for who in Scope:
            status = await _try(h, who, "POST", f"/api/v1/runs/{runs[0]['id']}/retry")
            assert (status == 403) == (who not in ALLOWED["operate"]), (who, status)
            status = await _try(h, who, "POST", f"/api/v1/runs/{runs[0]['id']}/cancel")
            assert (status == 403) == (who not in ALLOWED["operate"]), (who, status)
        # discard: operate, approve and admin; read may not
        status = await _try(h, "read", "POST", f"/api/v1/runs/{runs[0]['id']}/discard")
        assert status == 403


async def test_no_token_is_401_and_a_wrong_scope_403(tmp_path: Path) -> None:
    """401 without a token, with a bad one, with a revoked one; 403 names the scope needed."""
    async with harness(tmp_path, fleet_spec(clusters=1, svms=1)) as h:
        answer = await h.anonymous.get("/api/v1/runs")
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        h.anonymous.token = h.tokens["admin"] + "x"
        assert (await h.anonymous.get("/api/v1/runs")).status == 401
        h.anonymous.token = None
        forbidden = await h.clients["read"].post(
            "/api/v1/runs", {"inventory": "fleet.yaml", "command": "plan"}
        )
        assert forbidden.status == 403
        assert "operate" in forbidden.body["error"]
        assert (await h.anonymous.get("/healthz")).status == 200
        assert (await h.anonymous.get("/api/v1/openapi.json")).status == 200
        db = h.service.manager._db
        assert await db.revoke_token("read-bot", h.clock())
        assert (await h.clients["read"].get("/api/v1/runs")).status == 401


async def test_the_database_holds_only_hashes_and_no_log_line_a_token(tmp_path: Path) -> None:
    """The tokens table and the database files hold sha256 hashes; no log line holds a token."""
    with capture_logs() as logs:
        async with harness(tmp_path, fleet_spec(clusters=2, svms=1, initial_servers=0)) as h:
            run = await h.admin.start("plan")
            await h.admin.until(run["id"], *DONE)
            await h.clients["read"].events(run["id"])
            await h.clients["read"].post("/api/v1/runs", {"inventory": "fleet.yaml"})
            h.anonymous.token = h.tokens["admin"] + "-wrong"
            await h.anonymous.get("/api/v1/runs")
            tokens = dict(h.tokens)
        assert any(entry["event"] == "http_request" for entry in logs)
        text = repr(logs)
        for token in tokens.values():
            assert token not in text
        with sqlite3.connect(h.data / "bulkkm.db") as db:
            rows = db.execute("SELECT name, scope, hash FROM tokens").fetchall()
        assert {(name, scope) for name, scope, _ in rows} == {(f"{s}-bot", s) for s in tokens}
        for name, scope, digest in rows:
            assert digest == hashlib.sha256(tokens[scope].encode()).hexdigest(), name
        stored = b"".join(p.read_bytes() for p in h.data.glob("bulkkm.db*"))
        for token in tokens.values():
            assert token.encode() not in stored
        assert oct((h.data / "bulkkm.db").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("held", "needed", "allowed"),
    [
        (Scope.READ, Scope.OPERATE, False),
        (Scope.OPERATE, Scope.APPROVE, False),
        (Scope.APPROVE, Scope.OPERATE, False),
        (Scope.APPROVE, Scope.READ, True),
        (Scope.ADMIN, Scope.APPROVE, True),
        (Scope.ADMIN, Scope.OPERATE, True),
    ],
)
def test_scopes_separate_operating_from_approving(
    held: Scope, needed: Scope, allowed: bool
) -> None:
    """approve does not imply operate, nor the reverse; admin holds both."""
    assert held.allows(needed) is allowed
