"""``bulkkm simulate``: option errors, and serving until SIGTERM with an inventory written."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bulkkm.simulator import main


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


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """``--help`` prints the usage and returns 0."""
    assert main(["--help"]) == 0
    assert "--inventory-out" in capsys.readouterr().out


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
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bulkkm.simulator",
        "--clusters=3",
        "--svms=2",
        "--seed=5",
        "--dead=1",
        f"--inventory-out={inventory_path}",
        "--key-server=kms-a.example.com",
        "--key-server=kms-b.example.com:5697",
        f"--ready-file={ready_path}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(20):
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
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    text = stdout.decode()
    assert "sim-0000" in text
    assert "(dead)" in text
    assert "Traceback" not in stderr.decode()
