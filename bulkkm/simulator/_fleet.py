"""``SimulatedFleet``: every cluster of a ``FleetSpec`` served over HTTPS on loopback.

One process, one port per cluster, one CA in a temporary directory the fleet owns. What
happened is kept for tests: every request (``request_log``, ``requests``), every key-server
write (``write_log``), every read a migration verifies with (``verify_log``; ``journal``
merges both logs in time order) and the peak of concurrent requests per cluster.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import ipaddress
import os
import resource
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

import yaml

from bulkkm.simulator._generate import Layout, build_cluster, unknown_places
from bulkkm.simulator._inventory import write_inventory
from bulkkm.simulator._journal import RequestRecord, VerifyRecord, WriteRecord
from bulkkm.simulator._model import SimCluster
from bulkkm.simulator._server import ClusterServer
from bulkkm.simulator._spec import Faults, FleetSpec
from bulkkm.simulator._tls import make_tls

__all__ = ["SimulatedFleet", "point_at", "write_secrets"]

_DEFAULT_KEY_SERVERS = ("kms-new.example.com",)
# The simulator reads a KMIP password and drops it; any value does.
_KMIP_PASSWORD = "simulated-kmip-Passw0rd"  # noqa: S105 -- a fake, as the fleet's login


def _raise_fd_limit(clusters: int) -> None:
    """Raise the soft limit on open files toward what ``clusters`` ports and clients need."""
    # Each cluster holds a listening socket, and a client in the same process (tests,
    # benchmarks) adds two descriptors per connection; 1024 is too few for 1,000 clusters.
    needed = 4 * clusters + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


class SimulatedFleet:
    """A fleet of simulated ONTAP clusters; use ``async with`` (or ``start``/``close``)."""

    def __init__(
        self, spec: FleetSpec | None = None, *, layout: Sequence[Layout] | None = None
    ) -> None:
        """Prepare the fleet described by ``spec``; nothing listens before ``start``.

        ``layout`` names the clusters and their SVMs (from an inventory); ``spec.clusters``
        must then be its length and ``spec.svms`` is not used.
        """
        self.spec = spec if spec is not None else FleetSpec()
        try:
            ipaddress.ip_address(self.spec.host)
        except ValueError:
            raise ValueError(f"host must be an IP address, not {self.spec.host!r}") from None
        if layout is None:
            self._clusters = tuple(build_cluster(self.spec, i) for i in range(self.spec.clusters))
        else:
            if len(layout) != self.spec.clusters or len({c.name for c in layout}) != len(layout):
                raise ValueError("layout must name spec.clusters different clusters")
            self._clusters = tuple(build_cluster(self.spec, i, c) for i, c in enumerate(layout))
        unknown = unknown_places(self.spec, self._clusters)
        if unknown:
            raise ValueError(
                f"unreachable_servers names no cluster or node of the fleet: {unknown}"
            )
        self._by_name = {c.name: c for c in self._clusters}
        self._servers: dict[str, ClusterServer] = {}
        self._writes: list[WriteRecord] = []
        self._checks: list[VerifyRecord] = []
        self._requests: list[RequestRecord] = []
        self._dir: Path | None = None
        self._closing: asyncio.Event | None = None
        self._started = False

    async def __aenter__(self) -> SimulatedFleet:
        """Start serving."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving and remove the temporary directory."""
        await self.close()

    async def start(self) -> None:
        """Create the CA, then bind every cluster's port (dead clusters do not listen)."""
        if self._started:
            raise RuntimeError("a fleet starts once")
        self._started = True
        _raise_fd_limit(len(self._clusters))
        self._dir = Path(tempfile.mkdtemp(prefix="bulkkm-sim-"))
        self._closing = asyncio.Event()
        try:
            tls = make_tls(self.ca_file)
            for index, cluster in enumerate(self._clusters):
                server = ClusterServer(
                    cluster,
                    index=index,
                    seed=self.spec.seed,
                    tls=tls,
                    closing=self._closing,
                    writes=self._writes,
                    checks=self._checks,
                    requests=self._requests,
                    job_mode=self.spec.job_mode,
                    job_delay=self.spec.job_delay,
                )
                self._servers[cluster.name] = server
                await server.start(self.spec.host)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Drop every connection (hung requests included), close every port, remove the CA."""
        if self._closing is not None:
            self._closing.set()
        await asyncio.gather(*(server.close() for server in self._servers.values()))
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that signed every cluster's certificate."""
        if self._dir is None:
            raise RuntimeError("the fleet is not started")
        return self._dir / "fleet-ca.pem"

    @property
    def clusters(self) -> tuple[SimCluster, ...]:
        """Every cluster, in name order."""
        return self._clusters

    def cluster(self, name: str) -> SimCluster:
        """The live model of the cluster called ``name`` (tests may change it)."""
        return self._by_name[name]

    def set_faults(self, name: str, faults: Faults) -> None:
        """Change a cluster's faults while serving (``dead`` closes its port at once)."""
        server = self._servers.get(name)
        if server is None or self._closing is None or self._closing.is_set():
            self._by_name[name].faults = faults
        else:
            server.set_faults(faults)

    def write_inventory(
        self,
        path: Path | str,
        *,
        key_servers: Sequence[object] = _DEFAULT_KEY_SERVERS,
        concurrency: int = 4,
        svms: str | Sequence[object] = "all",
        cluster_scope: bool = True,
        extra_defaults: Mapping[str, object] | None = None,
    ) -> Path:
        """Write a contract-format inventory of this fleet, with its CA and a password file."""
        return write_inventory(
            Path(path),
            clusters=self._clusters,
            ca_file=self.ca_file,
            username=self.spec.username,
            password=self.spec.password,
            key_servers=key_servers,
            concurrency=concurrency,
            svms=svms,
            cluster_scope=cluster_scope,
            extra_defaults=extra_defaults,
        )

    def write_adapted_inventory(
        self, document: Mapping[str, object], path: Path | str, *, source: str
    ) -> Path:
        """Write ``document`` (an inventory's data) pointed at this fleet, as YAML.

        Only what reaching the simulator needs changes: each cluster's address, every
        password (a ``file:`` beside the inventory, mode 0600), every ``tls`` (this fleet's
        CA, no client certificate). Key servers, groups, limits, rollout and windows stay.
        """
        path = Path(path).absolute()
        path.parent.mkdir(parents=True, exist_ok=True)
        ca_copy = path.with_name(f"{path.stem}-ca.pem")
        shutil.copyfile(self.ca_file, ca_copy)
        password, kmip = write_secrets(path, self.spec.password)
        pointed = point_at(
            document,
            addresses={c.name: c.address for c in self._clusters},
            ca_file=str(ca_copy),
            password=password,
            kmip_password=kmip,
            username=None if all(c.username for c in self._clusters) else self.spec.username,
        )
        header = (
            f"# Written by bulkkm simulate from {source}: cluster addresses, passwords\n"
            "# and tls point at the simulator; everything else is as written there.\n"
        )
        body = yaml.safe_dump(pointed, sort_keys=False, allow_unicode=True)
        path.write_text(header + body, encoding="utf-8")
        return path

    def state(self) -> dict[str, object]:
        """Every cluster's configuration as JSON-able data (no passwords)."""
        return {"clusters": [cluster.state() for cluster in self._clusters]}

    @property
    def write_log(self) -> list[WriteRecord]:
        """Every key-server write the fleet processed, in order."""
        return self._writes

    @property
    def verify_log(self) -> list[VerifyRecord]:
        """Every connectivity read, keys read and finished restore, in order."""
        return self._checks

    def journal(
        self, *, key_manager_uuid: str | None = None
    ) -> tuple[WriteRecord | VerifyRecord, ...]:
        """Writes and verification records merged in time order (of one key manager, or all)."""
        writes: Iterable[WriteRecord | VerifyRecord] = self._writes
        checks: Iterable[WriteRecord | VerifyRecord] = self._checks
        merged = heapq.merge(writes, checks, key=lambda record: record.at)
        return tuple(
            record
            for record in merged
            if key_manager_uuid is None or record.key_manager_uuid == key_manager_uuid
        )

    @property
    def request_log(self) -> list[RequestRecord]:
        """Every request that reached a cluster, in arrival order."""
        return self._requests

    def requests(self, name: str) -> collections.Counter[tuple[str, str]]:
        """How many requests a cluster got, by (method, templated path)."""
        return collections.Counter(self._server(name).counts)

    def peak_in_flight(self, name: str) -> int:
        """The most requests a cluster was handling at once."""
        return self._server(name).peak

    def refused(self, name: str) -> int:
        """How many requests a cluster dropped because ``max_in_flight`` were in flight."""
        return self._server(name).refused

    def jobs(self, name: str) -> dict[str, dict[str, object]]:
        """A cluster's jobs (job mode) by uuid, as ``GET /api/cluster/jobs/{uuid}`` shows them."""
        return {
            job_uuid: {"state": job.state, "message": job.message, "code": job.code}
            for job_uuid, job in self._server(name).api.jobs.items()
        }

    def _server(self, name: str) -> ClusterServer:
        """The server of a cluster (kept after closing, for its counters)."""
        try:
            return self._servers[name]
        except KeyError:
            if name in self._by_name:
                raise RuntimeError("the fleet is not started") from None
            raise


def write_secret(path: Path, value: str) -> None:
    """Write ``value`` as the first line of ``path``, readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")


def write_secrets(inventory: Path, password: str) -> tuple[str, str]:
    """The login and KMIP password files of ``inventory``, as ``file:`` references."""
    login = inventory.with_name(f"{inventory.stem}.password").absolute()
    kmip = inventory.with_name(f"{inventory.stem}.kmip-password").absolute()
    write_secret(login, password)
    write_secret(kmip, _KMIP_PASSWORD)
    return f"file:{login}", f"file:{kmip}"


def _servers(value: object, kmip_password: str) -> object:
    """A ``key_servers`` list with every KMIP password replaced."""
    if not isinstance(value, list):
        return value
    return [
        {**entry, "password": kmip_password}
        if isinstance(entry, dict) and "password" in entry
        else entry
        for entry in value
    ]


def _settings(
    layer: Mapping[str, object], *, ca_file: str | None, password: str, kmip_password: str
) -> dict[str, object]:
    """One settings mapping (defaults, a group, a cluster) pointed at the simulator."""
    out = dict(layer)
    if "password" in out:
        out["password"] = password
    tls = out.get("tls")
    if isinstance(tls, dict):
        tls = {k: v for k, v in tls.items() if k not in ("ca_file", "client_cert", "client_key")}
        if ca_file is not None:
            tls["ca_file"] = ca_file
        out["tls"] = tls
    if "key_servers" in out:
        out["key_servers"] = _servers(out["key_servers"], kmip_password)
    svms = out.get("svms")
    if isinstance(svms, list):
        out["svms"] = [
            {**s, "key_servers": _servers(s["key_servers"], kmip_password)}
            if isinstance(s, dict) and "key_servers" in s
            else s
            for s in svms
        ]
    return out


def point_at(
    document: Mapping[str, object],
    *,
    addresses: Mapping[str, str] | None,
    ca_file: str | None,
    password: str,
    kmip_password: str,
    username: str | None,
) -> dict[str, object]:
    """An inventory's data changed to reach the simulator; the rest as it was.

    ``addresses`` (cluster name -> host:port; None keeps them), ``ca_file`` (None removes
    every CA, as when loading before the fleet exists) and the ``file:`` references for
    logins and KMIP passwords; ``username`` is set in the defaults when some cluster has none.
    """
    keep = {"password": password, "kmip_password": kmip_password}
    out = dict(document)
    defaults = _settings(_mapping(out.get("defaults")), ca_file=ca_file, **keep)
    defaults["password"] = password
    if ca_file is not None:
        tls = defaults.get("tls")
        defaults["tls"] = {**(tls if isinstance(tls, dict) else {}), "ca_file": ca_file}
    if username is not None:
        defaults.setdefault("username", username)
    out["defaults"] = defaults
    groups = out.get("groups")
    if isinstance(groups, dict):
        out["groups"] = {
            name: _settings(g, ca_file=ca_file, **keep) if isinstance(g, dict) else g
            for name, g in groups.items()
        }
    clusters = out.get("clusters")
    if isinstance(clusters, list):
        pointed: list[object] = []
        for entry in clusters:
            if not isinstance(entry, dict):
                pointed.append(entry)
                continue
            cluster = _settings(entry, ca_file=ca_file, **keep)
            if addresses is not None and cluster.get("name") in addresses:
                cluster["address"] = addresses[str(cluster["name"])]
            pointed.append(cluster)
        out["clusters"] = pointed
    return out


def _mapping(value: object) -> Mapping[str, object]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, dict) else {}
