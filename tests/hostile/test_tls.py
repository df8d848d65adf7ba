"""TLS is never optional: a bad certificate or a plain-HTTP port is a ``tls`` error, and no
credential leaves the process before the server is verified."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bulkkm.errors import ErrorCategory, InventoryError, TlsError
from bulkkm.inventory import load_inventory
from tests.cli import bulkkm
from tests.hostile._server import HostileServer, Pki, PlainListener, client_for


@pytest.mark.parametrize(
    ("certificate", "reason"),
    [
        ("wrong-name", "mismatch"),
        ("untrusted-ca", "unable to get local issuer"),
        ("expired", "expired"),
    ],
)
async def test_bad_certificate_is_a_tls_error_and_nothing_is_sent(
    pki: Pki, session: aiohttp.ClientSession, certificate: str, reason: str
) -> None:
    """A certificate for another name, from an unknown CA or expired: `tls`, no request sent."""
    context = {
        "wrong-name": lambda: pki.context("wrong.example.org"),
        "untrusted-ca": lambda: pki.context(rogue=True),
        "expired": lambda: pki.context(expired=True),
    }[certificate]()
    async with HostileServer(context) as server:
        with pytest.raises(TlsError, match=reason) as caught:
            await client_for(session, server.address, pki.ca_file).version()
        assert server.seen == []  # no request line, no Authorization header
    assert caught.value.category is ErrorCategory.TLS


async def test_plain_http_port_is_a_tls_error_and_gets_no_credential(
    pki: Pki, session: aiohttp.ClientSession
) -> None:
    """A plain-HTTP listener gets a TLS handshake and nothing else: no request, no password."""
    async with PlainListener() as listener:
        with pytest.raises(TlsError) as caught:
            await client_for(session, listener.address, pki.ca_file).version()
    assert caught.value.category is ErrorCategory.TLS
    assert listener.connections >= 1
    assert listener.received[:1] == b"\x16"  # a TLS handshake record, not "GET /"
    assert b"Authorization" not in listener.received
    assert b"HTTP/1.1" not in listener.received


def _inventory(tmp_path: Path, address: str) -> Path:
    """An inventory naming one cluster at ``address``."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:HOSTILE_TLS_PASSWORD\n"
        "  key_servers: [kms-new.example.com]\n"
        "clusters:\n"
        f"  - name: plain\n    address: {address}\n    svms: all\n"
    )
    return path


@pytest.mark.parametrize("scheme", ["http", "HTTP", "https"])
def test_inventory_refuses_an_address_with_a_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """``http://`` (or any scheme) in an address is an inventory error: always https."""
    monkeypatch.setenv("HOSTILE_TLS_PASSWORD", "not-used")
    with pytest.raises(InventoryError, match="scheme"):
        load_inventory(_inventory(tmp_path, f"{scheme}://127.0.0.1:8080"))


async def test_http_address_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    """apply on an http:// inventory exits 2 and never connects to the plain-HTTP port."""
    async with PlainListener() as listener:
        path = _inventory(tmp_path, f"http://{listener.address}")
        code, _, err = await bulkkm(
            "apply",
            str(path),
            "--report",
            str(tmp_path / "r.jsonl"),
            env={"HOSTILE_TLS_PASSWORD": "SENTINEL-plain-http-5d1c"},
        )
    assert code == 2
    assert "scheme" in err
    assert listener.connections == 0
    assert not (tmp_path / "r.jsonl").exists()


async def test_proxy_settings_in_the_environment_are_ignored(
    server: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """HTTPS_PROXY and friends never see a connection: credentials go to the cluster only."""
    async with PlainListener() as proxy:
        path = tmp_path / "fleet.yaml"
        path.write_text(
            "version: 1\n"
            "defaults:\n"
            "  username: admin\n"
            "  password: env:HOSTILE_TLS_PASSWORD\n"
            f"  tls: {{ca_file: {pki.ca_file}}}\n"
            "  key_servers: [kms-new.example.com]\n"
            f"clusters:\n  - {{name: c, address: '{server.address}', svms: all}}\n"
        )
        url = f"http://{proxy.address}"
        env = dict.fromkeys(("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY"), url)
        env.update(NO_PROXY="", no_proxy="", HOSTILE_TLS_PASSWORD="proxy-test-password")
        code, _, err = await bulkkm(
            "apply", str(path), "--report", str(tmp_path / "r.jsonl"), "-q", env=env
        )
    assert code == 0, err
    assert proxy.connections == 0
    assert [s.method for s in server.seen if s.method == "POST"] == ["POST"]
