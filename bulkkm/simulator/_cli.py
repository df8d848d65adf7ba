"""``bulkkm simulate``: serve a simulated fleet on loopback until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from bulkkm.servers import normalize_server
from bulkkm.simulator._fleet import SimulatedFleet
from bulkkm.simulator._spec import Faults, FleetSpec, cluster_name

__all__ = ["main"]

_PROG = "bulkkm simulate"
_SHOWN = 5  # clusters listed when there are more than 20


class _UsageError(Exception):
    """A command line argparse refused."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are raised, to be reported on one line."""

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise _UsageError(message)


def _integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``)."""

    def parse(text: str) -> int:
        """Parse and range-check one integer."""
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{text!r} must be {bound}")
        return value

    return parse


def _milliseconds(text: str) -> float:
    """An argparse type: milliseconds >= 0, returned in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of milliseconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number of milliseconds >= 0")
    return value / 1000.0


def _rate(text: str) -> float:
    """An argparse type: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a fraction from 0 to 1")
    return value


def _host(text: str) -> str:
    """An argparse type: an IP address to listen on."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def _server(text: str) -> str:
    """An argparse type: a key-server name, normalised (port 5696 implied)."""
    try:
        return normalize_server(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> _Parser:
    """The command line of ``bulkkm simulate``."""
    p = _Parser(prog=_PROG, description="Serve a simulated ONTAP fleet on loopback (HTTPS).")
    p.add_argument("--clusters", type=_integer(1, 10_000), default=3, metavar="N")
    p.add_argument(
        "--svms", type=_integer(0, 1000), default=4, metavar="N", help="data SVMs per cluster"
    )
    p.add_argument("--seed", type=_integer(0), default=0, metavar="N")
    p.add_argument("--latency", type=_milliseconds, default=0.0, metavar="MS")
    p.add_argument("--jitter", type=_milliseconds, default=0.0, metavar="MS")
    p.add_argument("--transient-rate", type=_rate, default=0.0, metavar="F")
    p.add_argument("--error500-rate", type=_rate, default=0.0, metavar="F")
    p.add_argument("--reset-rate", type=_rate, default=0.0, metavar="F")
    p.add_argument("--ambiguous-rate", type=_rate, default=0.0, metavar="F")
    p.add_argument("--hang-rate", type=_rate, default=0.0, metavar="F")
    p.add_argument("--max-in-flight", type=_integer(1), default=None, metavar="N")
    p.add_argument(
        "--dead", type=_integer(0), default=0, metavar="N", help="the first N clusters are dead"
    )
    p.add_argument("--job-mode", action="store_true", help="key-server POSTs answer 202 and a job")
    p.add_argument("--job-delay", type=_milliseconds, default=0.05, metavar="MS")
    p.add_argument("--initial-servers", type=_integer(0, 4), default=None, metavar="N")
    p.add_argument("--host", type=_host, default="127.0.0.1")
    p.add_argument("--inventory-out", type=Path, default=None, metavar="PATH")
    p.add_argument(
        "--key-server",
        type=_server,
        action="append",
        default=None,
        metavar="NAME",
        help="a key server the inventory asks for (repeatable; default kms-new.example.com)",
    )
    p.add_argument("--ready-file", type=Path, default=None, metavar="PATH")
    return p


def _spec(args: argparse.Namespace) -> FleetSpec:
    """The fleet the options describe."""
    if args.dead > args.clusters:
        raise _UsageError(f"--dead {args.dead} is more than --clusters {args.clusters}")
    key_servers = args.key_server or ["kms-new.example.com:5696"]
    if len(set(key_servers)) != len(key_servers) or len(key_servers) > 4:
        raise _UsageError("--key-server: at most 4 different servers")
    faults = Faults(
        latency=args.latency,
        jitter=args.jitter,
        transient_rate=args.transient_rate,
        error500_rate=args.error500_rate,
        reset_rate=args.reset_rate,
        ambiguous_rate=args.ambiguous_rate,
        hang_rate=args.hang_rate,
        max_in_flight=args.max_in_flight,
    )
    dead = dataclasses.replace(faults, dead=True)
    return FleetSpec(
        clusters=args.clusters,
        svms=args.svms,
        seed=args.seed,
        faults=faults,
        cluster_faults={cluster_name(i): dead for i in range(args.dead)},
        job_mode=args.job_mode,
        job_delay=args.job_delay,
        host=args.host,
        initial_servers=args.initial_servers,
    )


def _table(fleet: SimulatedFleet) -> str:
    """Where each cluster listens: all of them, or the first few and a count."""
    clusters = fleet.clusters
    shown = clusters if len(clusters) <= 20 else clusters[:_SHOWN]
    lines = [
        f"  {c.name}  {c.address:<22} ONTAP {c.version}{'  (dead)' if c.faults.dead else ''}"
        for c in shown
    ]
    if len(shown) < len(clusters):
        lines.append(f"  ... and {len(clusters) - len(shown)} more, to {clusters[-1].address}")
    return "\n".join(lines)


def _write_ready(path: Path, document: dict[str, object]) -> None:
    """Write the ready file whole (via a rename), so a watcher never reads half of it."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)


async def _serve(args: argparse.Namespace, spec: FleetSpec) -> int:
    """Serve the fleet until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with SimulatedFleet(spec) as fleet:
        inventory = None
        ca_file = fleet.ca_file
        if args.inventory_out is not None:
            key_servers = args.key_server or ["kms-new.example.com:5696"]
            inventory = fleet.write_inventory(args.inventory_out, key_servers=tuple(key_servers))
            ca_file = inventory.with_name(f"{inventory.stem}-ca.pem")
        print(f"{_PROG}: {len(fleet.clusters)} clusters x {spec.svms} SVMs (seed {spec.seed})")
        print(_table(fleet))
        print(f"CA: {ca_file}")
        if inventory is not None:
            print(f"inventory: {inventory}")
        print("serving; Ctrl-C to stop", flush=True)
        if args.ready_file is not None:
            _write_ready(
                args.ready_file,
                {
                    "clusters": [{"name": c.name, "address": c.address} for c in fleet.clusters],
                    "ca_file": str(ca_file),
                    "inventory": None if inventory is None else str(inventory),
                },
            )
        await stop.wait()
    return 0


def main(argv: list[str]) -> int:
    """Run ``bulkkm simulate`` with ``argv`` (the arguments after ``simulate``)."""
    try:
        args = _parser().parse_args(argv)
        spec = _spec(args)
    except _UsageError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return asyncio.run(_serve(args, spec))
    except OSError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        return 0
