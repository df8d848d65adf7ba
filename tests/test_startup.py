"""What a run imports: only what it uses, so that the first request leaves early.

Each check runs a command in a fresh interpreter and reads its ``sys.modules`` at the end:
what the command imported, not how long it took.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from bulkkm.rollout import DAYS

RUN = """
import sys
import pathlib
import orjson
import bulkkm.cli
code = bulkkm.cli.main(sys.argv[2:])
pathlib.Path(sys.argv[1]).write_bytes(orjson.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _run(tmp_path: Path, *argv: str | Path) -> tuple[int, set[str]]:
    """``bulkkm ARGV`` in a fresh interpreter: its exit code and the modules it imported."""
    out = tmp_path / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", RUN, out, *map(str, argv)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    body = orjson.loads(out.read_bytes())
    return body["code"], set(body["modules"])


@pytest.fixture
def closed_fleet(tmp_path: Path) -> Path:
    """One cluster whose maintenance window is on another day: apply runs and sends nothing."""
    other_day = DAYS[(datetime.now(UTC).weekday() + 3) % 7]
    path = tmp_path / "fleet.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            allow_plaintext_secrets: true
            defaults:
              username: admin
              password: not-a-real-one
              key_servers: [kms.example.com]
              svms: all
              window: {{days: [{other_day}], start: "01:00", end: "02:00", tz: UTC}}
            clusters:
              - {{name: paris-01, address: 192.0.2.1}}
            """
        )
    )
    return path


def test_apply_with_json_logs_imports_no_terminal_display(
    closed_fleet: Path, tmp_path: Path
) -> None:
    """A whole ``apply -q --log-format json`` (the engine ran) never loads rich; YAML only."""
    report = tmp_path / "report.jsonl"
    code, modules = _run(
        tmp_path, "apply", closed_fleet, "--report", report, "-q", "--log-format", "json"
    )
    assert code == 0
    assert '"outside_window"' in report.read_text()
    assert "bulkkm.engine" in modules
    assert "yaml" in modules
    assert not {m for m in modules if m == "rich" or m.startswith("rich.")}
    assert "tomllib" not in modules
    assert "bulkkm.simulator" not in modules


def test_console_logs_still_draw_with_rich(closed_fleet: Path, tmp_path: Path) -> None:
    """The console log format and the closing summary load rich where they draw with it."""
    code, modules = _run(
        tmp_path,
        "apply",
        closed_fleet,
        "--report",
        tmp_path / "report.jsonl",
        "--log-format",
        "console",
    )
    assert code == 0
    assert "rich.console" in modules


def test_toml_inventory_loads_tomllib_and_not_yaml(tmp_path: Path) -> None:
    """``validate`` of a TOML inventory reads it with tomllib alone."""
    path = tmp_path / "fleet.toml"
    path.write_text(
        textwrap.dedent(
            """\
            version = 1
            allow_plaintext_secrets = true
            [defaults]
            username = "admin"
            password = "not-a-real-one"
            key_servers = ["kms.example.com"]
            svms = "all"
            [[clusters]]
            name = "paris-01"
            address = "192.0.2.1"
            """
        )
    )
    code, modules = _run(tmp_path, "validate", path)
    assert code == 0
    assert "tomllib" in modules
    assert "yaml" not in modules


def test_validate_imports_no_engine(closed_fleet: Path, tmp_path: Path) -> None:
    """The command line imports the engine (and aiohttp) only for a run: ``prepare`` imports it
    while a child parses the inventory, so nothing at start-up may import it before."""
    code, modules = _run(tmp_path, "validate", closed_fleet)
    assert code == 0
    assert "bulkkm.engine" not in modules
    assert "aiohttp" not in modules
