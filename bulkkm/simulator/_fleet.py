"""``SimulatedFleet``: every cluster of a ``FleetSpec`` served over HTTPS on loopback.

One process, one port per cluster, one CA in a temporary directory the fleet owns. What
happened is kept for tests: every request (``request_log``, ``requests``), every key-server
write (``write_log``) and the peak of concurrent requests per cluster.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import resource
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from bulkkm.simulator._generate import build_cluster
from bulkkm.simulator._inventory import write_inventory
from bulkkm.simulator._journal import RequestRecord, WriteRecord
from bulkkm.simulator._model import SimCluster
from bulkkm.simulator._server import ClusterServer
from bulkkm.simulator._spec import Faults, FleetSpec
from bulkkm.simulator._tls import make_tls

__all__ = ["SimulatedFleet"]

_DEFAULT_KEY_SERVERS = ("kms-new.example.com",)


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

    def __init__(self, spec: FleetSpec | None = None) -> None:
        """Prepare the fleet described by ``spec``; nothing listens before ``start``."""
        self.spec = spec if spec is not None else FleetSpec()
        try:
            ipaddress.ip_address(self.spec.host)
        except ValueError:
            raise ValueError(f"host must be an IP address, not {self.spec.host!r}") from None
        self._clusters = tuple(build_cluster(self.spec, i) for i in range(self.spec.clusters))
        self._by_name = {c.name: c for c in self._clusters}
        self._servers: dict[str, ClusterServer] = {}
        self._writes: list[WriteRecord] = []
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

    def state(self) -> dict[str, object]:
        """Every cluster's configuration as JSON-able data (no passwords)."""
        return {"clusters": [cluster.state() for cluster in self._clusters]}

    @property
    def write_log(self) -> list[WriteRecord]:
        """Every key-server write the fleet processed, in order."""
        return self._writes

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
