"""Names and messages from a hostile cluster, through the real CLI: they cannot drive the
terminal or forge a log line, and the report keeps them exactly, as valid JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from tests.cli import bulkkm
from tests.hostile._server import KM_PATH, HostileServer, Pki, svm_km

SVMS = (
    "svm\x1b[31mred\x1b[0m",
    "line\nbreak",
    "bell\x07\rcarriage",
    "c1\x9bcsi",
    "rtl\u202eevil",
)
MESSAGE = "\x1b]0;pwned\x07 boom\n2026-11-27T10:00:00Z [info     ] forged_line"
FORBIDDEN = ("\x1b", "\x07", "\x9b", "\r", "\x00", "\u202e")
"""What must never reach a terminal raw: ESC, BEL, C1 CSI, CR, NUL, a bidi override."""


ENV = {
    "HOSTILE_CONSOLE_PASSWORD": "console-test-password",
    "NO_COLOR": "1",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
}
"""The cluster's password; colour forced off whatever the environment says."""


@pytest.fixture
async def hostile(pki: Pki) -> AsyncIterator[HostileServer]:
    """A cluster whose SVM names, server names, messages and codes carry control characters."""
    async with HostileServer(pki.context(), svms=SVMS) as server:
        server.key_managers[0]["external"] = {
            "servers": [{"server": "kms-old\x1b[2J.example.com:5696"}]
        }
        server.answer(
            "POST",
            f"{KM_PATH}/{svm_km(2)}/key-servers",
            400,
            {"error": {"message": MESSAGE, "code": "\x1b[31m65536999"}},
        )
        yield server


def inventory(tmp_path: Path, server: HostileServer, pki: Pki) -> Path:
    """An inventory naming the hostile cluster."""
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "version: 1\n"
        "defaults:\n"
        "  username: admin\n"
        "  password: env:HOSTILE_CONSOLE_PASSWORD\n"
        f"  tls: {{ca_file: {pki.ca_file}}}\n"
        "  limits: {timeout: 2}\n"
        "  key_servers: [kms-new.example.com]\n"
        "clusters:\n"
        f"  - name: hostile\n    address: {server.address}\n    svms: all\n"
        "    cluster_scope: true\n"
    )
    return path


def assert_safe(text: str) -> None:
    """No control character a terminal would act on."""
    for char in FORBIDDEN:
        assert char not in text, (
            f"raw {char!r} in output: ...{text[max(0, text.find(char) - 80) :][:160]!r}"
        )


async def test_console_output_escapes_every_control_character(
    hostile: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """--log-format console -vv: names shown escaped, no raw ESC/BEL/CR; the report keeps them."""
    report = tmp_path / "r.jsonl"
    code, out, err = await bulkkm(
        "apply", str(inventory(tmp_path, hostile, pki)), "--report", str(report),
        "--log-format", "console", "-vv", env=ENV,
    )  # fmt: skip
    assert code == 1, err
    assert_safe(out)
    assert_safe(err)
    assert "\\x1b" in err  # the names were shown, escaped
    assert "\nforged_line" not in err
    assert "\n2026-11-27T10:00:00Z" not in err

    lines = [orjson.loads(raw) for raw in report.read_bytes().splitlines()]
    targets = [line for line in lines if line["type"] == "target"]
    assert {t["svm"] for t in targets} == {*SVMS, None}
    failed = [t for t in targets if t["outcome"] == "failed"]
    assert [t["svm"] for t in failed] == [SVMS[1]]
    assert failed[0]["error"]["message"].isprintable()
    assert {t["outcome"] for t in targets if t not in failed} == {"added"}

    code, out, err = await bulkkm("report", "summarize", str(report), env=ENV)
    assert code == 0, err
    assert_safe(out + err)
    assert "65536999" in out


async def test_json_log_lines_cannot_be_forged(
    hostile: HostileServer, pki: Pki, tmp_path: Path
) -> None:
    """--log-format json -vv: every stderr line is one JSON object; no raw ESC on it."""
    report = tmp_path / "r.jsonl"
    code, _, err = await bulkkm(
        "apply", str(inventory(tmp_path, hostile, pki)), "--report", str(report),
        "--log-format", "json", "-vv", env=ENV,
    )  # fmt: skip
    assert code == 1, err
    assert "\x1b" not in err
    events = [orjson.loads(line) for line in err.splitlines() if line.strip()]
    assert all(isinstance(e, dict) and "event" in e for e in events)
    assert not [e for e in events if "forged_line" in e["event"]]
    # JSON keeps the data exactly (escaped by the encoding, not mangled).
    assert {e.get("svm") for e in events if e["event"] == "target_finished"} >= set(SVMS) - {
        SVMS[1]
    }
