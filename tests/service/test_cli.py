"""``bulkkm serve`` and ``bulkkm token`` as a user runs them."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli import bulkkm

WITHOUT_AIOSQLITE = """
import sys
sys.modules["aiosqlite"] = None  # as if `pip install bulkkm` without [service]
import bulkkm.cli
for command in (["serve", "--data", "d"], ["token", "list", "--data", "d"]):
    assert bulkkm.cli.main(command) == 2
print("ok")
"""


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--listen", "0.0.0.0:8080"), "not a loopback address"),
        (("--listen", "[::]:8080"), "not a loopback address"),
        (("--listen", "example.com:8080"), "not a loopback address"),
        (("--listen", "127.0.0.1"), "HOST:PORT"),
        (("--tls-cert", "cert.pem"), "--tls-key go together"),
        (("--plan-ttl", "soon"), "not a duration"),
    ],
)
async def test_serve_refuses_in_one_line(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    """Plain HTTP beyond loopback, half a TLS setup, a bad address: one line, exit 2."""
    code, out, err = await bulkkm("serve", "--data", str(tmp_path / "data"), *args)
    assert code == 2
    assert says in err
    assert len(err.strip().splitlines()) == 1, err
    assert out == ""


async def test_token_create_prints_it_once_and_stores_its_hash(tmp_path: Path) -> None:
    """The token on stdout, nothing else; the database has its sha256; a name is unique."""
    data = tmp_path / "data"
    code, out, err = await bulkkm(
        "token", "create", "--data", str(data), "--name", "ci", "--scope", "read"
    )
    assert code == 0, err
    token = out.strip()
    assert token.startswith("bkm_")
    assert token not in err
    with sqlite3.connect(data / "bulkkm.db") as db:
        ((stored,),) = db.execute("SELECT hash FROM tokens WHERE name = 'ci'").fetchall()
    assert stored == hashlib.sha256(token.encode()).hexdigest()
    code, _, err = await bulkkm(
        "token", "create", "--data", str(data), "--name", "ci", "--scope", "admin"
    )
    assert code == 2
    assert "exists already" in err
    code, out, _ = await bulkkm("token", "list", "--data", str(data))
    assert out.startswith("ci  read  created ")
    assert token not in out
    assert (await bulkkm("token", "revoke", "--data", str(data), "--name", "ci")).code == 0
    assert (await bulkkm("token", "revoke", "--data", str(data), "--name", "ci")).code == 2


def test_the_service_commands_say_which_extra_they_need() -> None:
    """Without aiosqlite, serve and token say `pip install 'bulkkm[service]'`, exit 2."""
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_AIOSQLITE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr.count("pip install 'bulkkm[service]'") == 2
