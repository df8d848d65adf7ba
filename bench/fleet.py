"""The simulated fleet in a process of its own: ``bulkkm simulate`` started, awaited, stopped.

Every fleet starts with no key server on any key manager (``--initial-servers 0``) and an
inventory asking for one, so each selected key manager needs exactly one add. The inventory
the simulator writes is rewritten with ``cluster_scope: false``: the simulator makes about
one cluster-scoped key manager in ten onboard, which would make its target ``blocked``;
with ``svms: all`` only SVMs that have an external key manager are selected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import yaml

__all__ = ["DESIRED_SERVER", "ClusterAddress", "Fleet", "FleetShape", "running_fleet"]

DESIRED_SERVER: Final = "kms-new.example.com:5696"
READY_TIMEOUT: Final = 300.0
STOP_TIMEOUT: Final = 30.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetShape:
    """What to simulate: sizes and faults."""

    clusters: int
    svms: int
    latency_ms: float = 0.0
    write_latency_ms: float | None = None
    """Key-server writes (POST, DELETE) answer after this long instead (None: ``latency_ms``)."""
    transient_rate: float = 0.0
    ambiguous_rate: float = 0.0
    seed: int = 0

    @property
    def label(self) -> str:
        """``1000 x 20``."""
        return f"{self.clusters} x {self.svms}"

    def arguments(self) -> list[str]:
        """The ``bulkkm simulate`` options for this shape."""
        args = [
            "--clusters",
            str(self.clusters),
            "--svms",
            str(self.svms),
            "--seed",
            str(self.seed),
            "--latency",
            f"{self.latency_ms:g}",
            "--initial-servers",
            "0",
            "--key-server",
            DESIRED_SERVER,
        ]
        if self.write_latency_ms is not None:
            args += ["--write-latency", f"{self.write_latency_ms:g}"]
        if self.transient_rate:
            args += ["--transient-rate", f"{self.transient_rate:g}"]
        if self.ambiguous_rate:
            args += ["--ambiguous-rate", f"{self.ambiguous_rate:g}"]
        return args


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterAddress:
    """Where one simulated cluster listens."""

    name: str
    host: str
    port: int


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Fleet:
    """A running simulator process and what a client needs to reach it."""

    shape: FleetShape
    pid: int
    inventory: Path
    ca_file: Path
    username: str
    password: str = dataclasses.field(repr=False)
    clusters: tuple[ClusterAddress, ...]

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the simulator process has used so far (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        # After the command name: state is field 3, utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_fleet(shape: FleetShape, directory: Path) -> Iterator[Fleet]:
    """Start ``bulkkm simulate`` for ``shape`` in ``directory``; stop it on leaving.

    ``directory`` must be new for each fleet: bulkkm caches one TLS context per CA path.
    """
    directory.mkdir(parents=True)
    ready = directory / "ready.json"
    written = directory / "simulated.yaml"
    log = directory / "simulator.log"
    command = [sys.executable, "-m", "bulkkm", "simulate", *shape.arguments()]
    command += ["--ready-file", str(ready), "--inventory-out", str(written)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _await_ready(process, ready, log)
        yield _fleet(shape, process.pid, ready, written, directory / "fleet.yaml")
    finally:
        _stop(process)


def _await_ready(process: subprocess.Popen[bytes], ready: Path, log: Path) -> None:
    """Wait for the ready file; a simulator that exits or takes too long is an error."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the simulator exited with {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the simulator was not ready within {READY_TIMEOUT:g} s")
        time.sleep(0.05)


def _fleet(shape: FleetShape, pid: int, ready: Path, written: Path, inventory: Path) -> Fleet:
    """Read the ready file and the simulator's inventory; write the benchmark's inventory."""
    document = json.loads(ready.read_text())
    data = yaml.safe_load(written.read_text())
    for cluster in data["clusters"]:
        cluster["cluster_scope"] = False
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))
    defaults = data["defaults"]
    secret = str(defaults["password"])
    if not secret.startswith("file:"):
        raise RuntimeError(f"unexpected password reference in {written}")
    password = Path(secret.removeprefix("file:")).read_text().splitlines()[0]
    clusters = []
    for entry in document["clusters"]:
        host, _, port = str(entry["address"]).rpartition(":")
        clusters.append(ClusterAddress(name=str(entry["name"]), host=host, port=int(port)))
    return Fleet(
        shape=shape,
        pid=pid,
        inventory=inventory,
        ca_file=Path(str(defaults["tls"]["ca_file"])),
        username=str(defaults["username"]),
        password=password,
        clusters=tuple(clusters),
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the simulator does not exit in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
