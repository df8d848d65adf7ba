"""``bulkkm simulate``: option errors, and serving until SIGTERM with an inventory written."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bulkkm.simulator import _cli, main
from tests.cli import running


@pytest.mark.parametrize(
    "argv",
    [
        ["--clusters", "-1"],
        ["--clusters", "0"],
        ["--svms", "-3"],
        ["--transient-rate", "1.5"],
        ["--reset-rate", "-0.1"],
        ["--latency", "fast"],
        ["--max-in-flight", "0"],
        ["--initial-servers", "5"],
        ["--clusters", "2", "--dead", "3"],
        ["--host", "localhost"],
        ["--key-server", "kms bad"],
        ["--bogus"],
        ["positional"],
        ["--profile", "messy"],
        ["--log-format", "xml"],
        ["--clean", "--initial-servers", "4"],
        ["--inventory-in", "inventories/small-fleet.yaml"],
        ["--inventory-in", "no-such.yaml", "--inventory-out", "/nonexistent/x.yaml"],
        ["--inventory-in", "x.yaml", "--inventory-out", "y.yaml", "--clusters", "2"],
        ["--inventory-in", "x.yaml", "--inventory-out", "y.yaml", "--key-server", "k.example"],
        ["--nodes", "0"],
        ["--nodes", "25"],
        ["--quorum-rate", "2"],
        ["--connect-delay", "-5"],
        ["--unreachable-server", "kms bad"],
        ["--unreachable-server", "kms.example.com@"],
        ["--unreachable-server", "kms.example.com@sim-0009"],
        ["--clusters", "2", "--unreachable-server", "kms.example.com@sim-0001-03"],
        ["--unreplicated-server", "kms bad"],
    ],
)
def test_bad_option_is_one_line_on_stderr_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every refused command line prints one ``bulkkm simulate: error:`` line; exit 2."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("bulkkm simulate: error: ")


def test_help_exits_0_and_gives_every_option_a_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` returns 0; every option has help, times say ms and rates say 0-1."""
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--inventory-in", "--inventory-out", "--clean", "--log-format", "--quiet"):
        assert option in text
    for option in ("--latency MS", "--jitter MS", "--job-delay MS"):
        assert re.search(re.escape(option) + r" milliseconds", text), option
    for option in ("transient", "error500", "reset", "ambiguous", "hang", "quorum"):
        assert re.search(rf"--{option}-rate F fraction 0-1", text), option
    assert "--connect-delay MS milliseconds" in text
    for option in ("--nodes", "--unreachable-server", "--unreplicated-server"):
        assert option in text


def test_migration_options_reach_the_fleet_spec() -> None:
    """Nodes, reachability, unreplicated servers, empty new servers and DELETE faults."""
    argv = [
        "--clusters", "2", "--nodes", "3", "--quorum-rate", "0.25", "--connect-delay", "200",
        "--unreachable-server", "KMS-New.example.com", "--unreachable-server", "10.0.0.9@sim-0001",
        "--unreachable-server", "kms-b.example.com:6000@sim-0000-03",
        "--unreplicated-server", "kms-old-1.example.com", "--new-servers-empty",
    ]  # fmt: skip
    spec = _cli._setup(_cli._parser().parse_args(argv)).spec
    assert spec.nodes == 3
    assert (spec.faults.quorum_rate, spec.faults.connect_delay) == (0.25, 0.2)
    assert spec.unreachable_servers == (
        "kms-new.example.com:5696",
        "10.0.0.9:5696@sim-0001",
        "kms-b.example.com:6000@sim-0000-03",
    )
    assert spec.unreplicated_servers == ("kms-old-1.example.com:5696",)
    assert spec.new_server_copies is False


def test_invalid_inventory_in_names_the_file_and_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken ``--inventory-in`` prints its problems, by key path, and nothing is served."""
    source = tmp_path / "broken.yaml"
    source.write_text("version: 1\nclusters:\n  - name: a\n    adress: 10.0.0.1\n")
    assert main(["--inventory-in", str(source), "--inventory-out", str(tmp_path / "o.yaml")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(source) in captured.err
    assert "clusters[0]" in captured.err
    assert not (tmp_path / "o.yaml").exists()


@pytest.mark.parametrize("quiet", [False, True])
async def test_json_logs_and_quiet_like_every_bulkkm_command(tmp_path: Path, quiet: bool) -> None:
    """``--log-format json`` logs JSON lines only on stderr; ``-q`` also drops the start-up text."""
    ready_path = tmp_path / "ready.json"
    simulator = running(
        "simulate",
        "--clusters=2",
        "--svms=1",
        "--log-format=json",
        *(["-q"] if quiet else []),
        f"--ready-file={ready_path}",
    )
    async with simulator as process, asyncio.timeout(20):
        await _wait_for(ready_path, process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()]
    if quiet:
        assert stdout == b""
        assert events == []
    else:
        assert "sim-0001" in stdout.decode()
        assert events == ["simulator_serving", "simulator_stopped"]


def _read(path: Path) -> str | None:
    """A file's text, or None while it does not exist."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


async def _wait_for(path: Path, process: asyncio.subprocess.Process) -> Any:
    """The ready file's JSON, once the simulator wrote it."""
    for _ in range(400):
        text = _read(path)
        if text is not None:
            return json.loads(text)
        assert process.returncode is None, "the simulator exited early"
        await asyncio.sleep(0.05)
    raise AssertionError("no ready file")


async def test_serves_writes_inventory_and_stops_on_sigterm(tmp_path: Path) -> None:
    """``python -m bulkkm.simulator`` serves, writes its inventory, and exits 0 on SIGTERM."""
    inventory_path = tmp_path / "fleet.yaml"
    ready_path = tmp_path / "ready.json"
    simulator = running(
        "--clusters=3",
        "--svms=2",
        "--seed=5",
        "--dead=1",
        f"--inventory-out={inventory_path}",
        "--key-server=kms-a.example.com",
        "--key-server=kms-b.example.com:5697",
        f"--ready-file={ready_path}",
        entry=("-m", "bulkkm.simulator"),
    )
    async with simulator as process, asyncio.timeout(20):
        ready = await _wait_for(ready_path, process)
        inventory = yaml.safe_load(_read(inventory_path) or "")
        clusters = ready["clusters"]
        assert [c["name"] for c in inventory["clusters"]] == [
            "sim-0000",
            "sim-0001",
            "sim-0002",
        ]
        assert [c["address"] for c in inventory["clusters"]] == [c["address"] for c in clusters]
        defaults = inventory["defaults"]
        assert defaults["tls"]["ca_file"] == ready["ca_file"]
        assert defaults["password"].startswith("file:")
        assert defaults["key_servers"] == ["kms-a.example.com:5696", "kms-b.example.com:5697"]
        password = (_read(Path(defaults["password"][5:])) or "").strip()
        context = ssl.create_default_context(cafile=defaults["tls"]["ca_file"])
        auth = aiohttp.encode_basic_auth(defaults["username"], password)
        async with aiohttp.ClientSession(headers={"Authorization": auth}) as session:
            url = f"https://{clusters[1]['address']}/api/cluster"
            async with session.get(url, ssl=context) as response:
                assert response.status == 200
                assert (await response.json())["name"] == "sim-0001"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert "sim-0000" in text
    assert "(dead)" in text
    assert "Traceback" not in stderr.decode()
