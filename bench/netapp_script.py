"""The alternative a user would write: NetApp's official client from a thread pool.

Each thread takes one cluster at a time: it lists the key managers
(``SecurityKeyManager.get_collection(fields=...)``) and POSTs the server to each SVM key
manager that lacks it (``KeyServer(uuid, server=...).post()``), one request after another.
``HostConnection`` is used as a context manager: the library keeps that context in a
``threading.local``, so each thread talks to its own cluster (``config.CONNECTION`` is
global and would be shared by every thread). TLS is verified against the simulator's CA.

Run as ``python -m bench.netapp_script INVENTORY --server NAME --threads N``; it prints one
JSON object (timings and counts) on stdout. ``netapp_script_rollout`` runs it so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import yaml
from netapp_ontap.error import NetAppRestError
from netapp_ontap.host_connection import HostConnection
from netapp_ontap.resource import Resource
from netapp_ontap.resources.key_server import KeyServer
from netapp_ontap.resources.security_key_manager import SecurityKeyManager

__all__ = ["ScriptRun", "netapp_script_rollout"]

FIELDS: Final = "uuid,scope,svm.name,external.servers,onboard.enabled"
ROOT: Final = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ScriptRun:
    """What one thread-pool run did and how long it took."""

    threads: int
    seconds: float
    cpu_seconds: float
    added: int
    present: int
    failed: int


@dataclasses.dataclass(slots=True)
class _Counts:
    """Counters the threads share (under a lock)."""

    added: int = 0
    present: int = 0
    failed: int = 0


class _Rollout:
    """One run of the script over an inventory's clusters."""

    def __init__(self, inventory: Path, server: str) -> None:
        """Read the cluster list, credentials and CA from the inventory."""
        data = yaml.safe_load(inventory.read_text())
        defaults = data["defaults"]
        self.clusters = [str(c["address"]) for c in data["clusters"]]
        self.username = str(defaults["username"])
        self.password = (
            Path(str(defaults["password"]).removeprefix("file:")).read_text().splitlines()[0]
        )
        self.ca_file = str(defaults["tls"]["ca_file"])
        self.server = server
        self.counts = _Counts()
        self.lock = threading.Lock()

    def cluster(self, address: str) -> None:
        """Discover one cluster's key managers and add the server where it is missing."""
        host, _, port = address.rpartition(":")
        added = present = failed = 0
        connection = HostConnection(
            host,
            port=int(port),
            username=self.username,
            password=self.password,
            # requests takes a CA path here, though netapp_ontap annotates a bool.
            verify=self.ca_file,  # type: ignore[arg-type]
        )
        with connection:
            try:
                key_managers = list(SecurityKeyManager.get_collection(fields=FIELDS))
            except NetAppRestError:
                key_managers, failed = [], 1
            for km in key_managers:
                if not _external_svm(km):
                    continue
                servers = {s.server for s in getattr(km.external, "servers", None) or []}
                if self.server in servers:
                    present += 1
                    continue
                try:
                    KeyServer(km.uuid, server=self.server).post()
                    added += 1
                except NetAppRestError:
                    failed += 1
        with self.lock:
            self.counts.added += added
            self.counts.present += present
            self.counts.failed += failed


def _external_svm(km: Resource) -> bool:
    """Whether a key manager is an SVM's external one (what ``svms: all`` selects)."""
    onboard = getattr(km, "onboard", None)
    return (
        getattr(km, "scope", None) == "svm"
        and getattr(km, "external", None) is not None
        and not getattr(onboard, "enabled", False)
    )


def main(argv: list[str] | None = None) -> int:
    """Run the thread pool over the inventory; print the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.netapp_script")
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--server", required=True)
    parser.add_argument("--threads", type=int, default=32)
    args = parser.parse_args(argv)
    # requests prefers these variables to the connection's ``verify=`` CA file.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)
    rollout = _Rollout(args.inventory, args.server)
    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        list(pool.map(rollout.cluster, rollout.clusters))
    result = ScriptRun(
        threads=args.threads,
        seconds=time.perf_counter() - started,
        cpu_seconds=time.process_time() - cpu,
        added=rollout.counts.added,
        present=rollout.counts.present,
        failed=rollout.counts.failed,
    )
    print(json.dumps(dataclasses.asdict(result)))
    return 0


def netapp_script_rollout(inventory: Path, *, server: str, threads: int) -> ScriptRun:
    """Run the script in a process of its own (its threads must not share our GIL)."""
    command = [sys.executable, "-m", "bench.netapp_script", str(inventory)]
    command += ["--server", server, "--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, check=False, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"the netapp_ontap script failed:\n{done.stderr[-2000:]}")
    return ScriptRun(**json.loads(done.stdout.splitlines()[-1]))


if __name__ == "__main__":
    raise SystemExit(main())
