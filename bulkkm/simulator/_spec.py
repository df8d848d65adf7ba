"""What fleet to simulate (``FleetSpec``) and how each cluster misbehaves (``Faults``)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from bulkkm.servers import normalize_server

__all__ = [
    "ANSWER_FAULTS",
    "KEY_SERVER_WRITES",
    "ROUTE_KINDS",
    "Faults",
    "FleetSpec",
    "RouteLatency",
    "cluster_name",
    "parse_unreachable",
    "write_latency",
]

_MAX_NODES = 24  # ONTAP's largest NAS cluster

ANSWER_FAULTS = (
    "applied_error500_rate",
    "garbled_201_rate",
    "empty_204_rate",
    "jobless_202_rate",
)
"""The faults that answer an applied key-server POST wrongly, in the order they are drawn."""

ROUTE_KINDS: Final = (
    "cluster",
    "job",
    "svms",
    "svm",
    "key_managers",
    "key_manager",
    "key_servers",
    "key_server",
    "key_ids",
    "key_id",
    "restore",
)
"""The resources a ``RouteLatency`` can name (``_api.route``'s kinds)."""
_METHODS: Final = frozenset({"GET", "POST", "PATCH", "DELETE"})


def _check_rate(name: str, value: float) -> None:
    """Refuse a fraction outside [0, 1] (or not a number)."""
    if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a fraction from 0 to 1, not {value!r}")


def _check_seconds(name: str, value: float) -> None:
    """Refuse a negative or non-finite duration."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a number of seconds >= 0, not {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RouteLatency:
    """The latency of the answers to one method on one kind of resource.

    ``method`` is GET, POST, PATCH, DELETE or ``*`` (any); ``route`` a kind of
    ``ROUTE_KINDS`` (``key_servers``: a key manager's key-server collection, where a POST
    adds) or ``*`` (any path). A real ONTAP answers a key-server POST in seconds (it reaches
    the KMIP server from every node first) and a GET in milliseconds.
    """

    method: str
    route: str
    seconds: float

    def __post_init__(self) -> None:
        """Refuse a method or resource the simulator never answers, or a bad duration."""
        if self.method != "*" and self.method not in _METHODS:
            raise ValueError(
                f"method must be one of {sorted(_METHODS)} or '*', not {self.method!r}"
            )
        if self.route != "*" and self.route not in ROUTE_KINDS:
            raise ValueError(f"route must be one of {list(ROUTE_KINDS)} or '*', not {self.route!r}")
        _check_seconds("seconds", self.seconds)

    def matches(self, method: str, kind: str) -> bool:
        """Whether a request of ``method`` on a resource of ``kind`` takes this latency."""
        return self.method in ("*", method) and self.route in ("*", kind)


KEY_SERVER_WRITES: Final = (
    ("POST", "key_servers"),
    ("PATCH", "key_server"),
    ("DELETE", "key_server"),
)
"""What ``write_latency`` slows: adding, modifying and removing a key server."""


def write_latency(seconds: float) -> tuple[RouteLatency, ...]:
    """Route latencies that make every key-server write take ``seconds``."""
    return tuple(RouteLatency(method=m, route=r, seconds=seconds) for m, r in KEY_SERVER_WRITES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """How one simulated cluster misbehaves; every draw comes from the cluster's seeded RNG.

    ``latency`` + uniform ``jitter`` delay every answer (a slow cluster is a big latency);
    ``route_latency`` replaces ``latency`` for the requests it names (the first entry that
    matches the method and resource wins), e.g. key-server POSTs of seconds (``write_latency``).
    The rates are fractions of requests: ``transient_rate`` of key-server POSTs that would
    succeed fail with a transient KMIP code instead; ``error500_rate`` of any request get a
    500; ``reset_rate`` of requests are dropped unanswered before anything is applied;
    ``hang_rate`` are never answered; ``ambiguous_rate`` of key-server POSTs are applied and
    then dropped unanswered. ``dead`` closes the port. ``max_in_flight`` caps concurrent
    requests: the excess is dropped at the connection, unanswered, as ONTAP does when its
    queue is full. ``throttle_rate`` of key-server POSTs are answered 429 with
    ``Retry-After: throttle_retry_after`` (whole seconds), before anything is applied.

    Answers that lie about a write: ``job_error500_rate`` of job polls get a 500 while the
    job goes on (and applies); of the key-server POSTs applied at once (not in job mode),
    ``applied_error500_rate`` are answered 500 without a known code, ``garbled_201_rate``
    201 with a body that is not JSON, ``empty_204_rate`` 204 with no body and
    ``jobless_202_rate`` 202 without a job link. Each is applied: only a read-back tells.

    Key-server DELETEs: ``quorum_rate`` are refused with 65536600 (a node out of quorum;
    ``force=true`` skips it, as on ONTAP) and ``transient_rate`` with 2621573 (SVM locked),
    before anything is applied; ``ambiguous_rate`` are applied then dropped unanswered and
    ``applied_error500_rate`` applied then answered 500; latency, resets, hangs and 500s as
    for any request. ``connect_delay``: a server just added answers ``unknown`` on each node
    for a seeded 50-100% of this many seconds before it is ``available`` (so a verification
    must poll).
    """

    latency: float = 0.0
    route_latency: tuple[RouteLatency, ...] = ()
    jitter: float = 0.0
    transient_rate: float = 0.0
    error500_rate: float = 0.0
    reset_rate: float = 0.0
    hang_rate: float = 0.0
    ambiguous_rate: float = 0.0
    job_error500_rate: float = 0.0
    applied_error500_rate: float = 0.0
    garbled_201_rate: float = 0.0
    empty_204_rate: float = 0.0
    jobless_202_rate: float = 0.0
    throttle_rate: float = 0.0
    throttle_retry_after: int = 1
    dead: bool = False
    max_in_flight: int | None = None
    quorum_rate: float = 0.0
    connect_delay: float = 0.0

    def latency_of(self, method: str, kind: str) -> float:
        """Seconds before answering ``method`` on a resource of ``kind`` (before jitter)."""
        for entry in self.route_latency:
            if entry.matches(method, kind):
                return entry.seconds
        return self.latency

    def __post_init__(self) -> None:
        """Refuse values that no cluster could have."""
        _check_seconds("latency", self.latency)
        object.__setattr__(self, "route_latency", tuple(self.route_latency))
        if not all(isinstance(r, RouteLatency) for r in self.route_latency):
            raise ValueError("route_latency must hold RouteLatency entries")
        _check_seconds("jitter", self.jitter)
        _check_seconds("connect_delay", self.connect_delay)
        _check_rate("quorum_rate", self.quorum_rate)
        for name in (
            "transient_rate",
            "error500_rate",
            "reset_rate",
            "hang_rate",
            "ambiguous_rate",
            *ANSWER_FAULTS,
            "job_error500_rate",
            "throttle_rate",
        ):
            _check_rate(name, getattr(self, name))
        if not (isinstance(self.throttle_retry_after, int) and self.throttle_retry_after >= 0):
            wait = self.throttle_retry_after
            raise ValueError(f"throttle_retry_after must be whole seconds >= 0, not {wait!r}")
        if self.max_in_flight is not None and not (
            isinstance(self.max_in_flight, int) and self.max_in_flight >= 1
        ):
            raise ValueError(f"max_in_flight must be None or >= 1, not {self.max_in_flight!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    """The fleet to simulate: sizes, seed, faults, and the knobs of the generated state.

    Every external key manager starts with ``initial_servers`` primaries (``None``: a seeded
    0-4). Each data SVM has an external key manager with probability ``external_ratio``,
    onboard key management with ``onboard_ratio``, and none otherwise; the cluster-scoped key
    manager is external with probability ``cluster_external_ratio``.

    ``headroom`` picks the profile. ``None`` (the default profile) seeds trouble on purpose:
    key managers already at 4 primaries, onboard key managers, ONTAP before 9.8. A number
    asks for a clean fleet where that many new primaries fit on every key manager: every
    key manager external, ONTAP 9.8 or later, at most ``4 - headroom`` primaries at start.

    Migration knobs: every cluster has ``nodes`` nodes (``sim-0000-01`` ...). Each external
    key manager holds a few seeded keys, stored on each of its initial servers.
    ``unreachable_servers``: ``NAME`` (no node reaches it), ``NAME@CLUSTER`` (no node of that
    cluster) or ``NAME@NODE`` (that node only). ``unreplicated_servers``: a key manager that
    starts with one of these servers holds one more key, stored on that server only (so
    ONTAP refuses to delete it, 65536700, until a restore copies it elsewhere).
    ``new_server_copies``: a server added later is given copies of the key manager's keys,
    as when the new KMS was loaded from the old one (False: it starts empty and only a
    restore from it fills it).
    """

    clusters: int = 3
    svms: int = 4
    seed: int = 0
    faults: Faults = Faults()
    cluster_faults: Mapping[str, Faults] = dataclasses.field(default_factory=dict)
    job_mode: bool = False
    job_delay: float = 0.05
    host: str = "127.0.0.1"
    external_ratio: float = 0.8
    onboard_ratio: float = 0.1
    cluster_external_ratio: float = 0.9
    initial_servers: int | None = None
    username: str = "admin"
    password: str = dataclasses.field(default="simulated-Passw0rd", repr=False)
    headroom: int | None = None
    nodes: int = 2
    unreachable_servers: tuple[str, ...] = ()
    unreplicated_servers: tuple[str, ...] = ()
    new_server_copies: bool = True

    def __post_init__(self) -> None:
        """Refuse impossible fleets; freeze the per-cluster fault overrides."""
        if not isinstance(self.nodes, int) or not 1 <= self.nodes <= _MAX_NODES:
            raise ValueError(f"nodes must be an integer from 1 to {_MAX_NODES}, not {self.nodes!r}")
        unreachable = tuple(
            _join(*parse_unreachable(entry)) for entry in tuple(self.unreachable_servers)
        )
        object.__setattr__(self, "unreachable_servers", unreachable)
        unreplicated = tuple(_server_name(entry) for entry in tuple(self.unreplicated_servers))
        object.__setattr__(self, "unreplicated_servers", unreplicated)
        for name in ("clusters", "svms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, not {value!r}")
        if self.clusters > 10_000:
            raise ValueError("clusters must be at most 10000 (names are sim-0000..sim-9999)")
        for name in ("external_ratio", "onboard_ratio", "cluster_external_ratio"):
            _check_rate(name, getattr(self, name))
        if self.external_ratio + self.onboard_ratio > 1.0:
            raise ValueError("external_ratio + onboard_ratio must not exceed 1")
        if self.initial_servers is not None and not 0 <= self.initial_servers <= 4:
            raise ValueError("initial_servers must be None or 0..4 (ONTAP allows 4 primaries)")
        if self.headroom is not None and not 0 <= self.headroom <= 4 - (self.initial_servers or 0):
            raise ValueError("headroom must be None or 0..4, and leave initial_servers room")
        _check_seconds("job_delay", self.job_delay)
        names = {cluster_name(i) for i in range(self.clusters)}
        unknown = sorted(set(self.cluster_faults) - names)
        if unknown:
            raise ValueError(f"cluster_faults names clusters not in the fleet: {unknown}")
        object.__setattr__(self, "cluster_faults", MappingProxyType(dict(self.cluster_faults)))

    def faults_for(self, name: str) -> Faults:
        """The faults a cluster starts with: its override, else the fleet default."""
        return self.cluster_faults.get(name, self.faults)


def _server_name(text: object) -> str:
    """A key-server name, normalised; ValueError if it is none."""
    if not isinstance(text, str):
        raise ValueError(f"a key server must be a string, not {text!r}")
    try:
        return normalize_server(text)
    except ValueError as exc:
        raise ValueError(f"not a key server: {exc}") from None


def parse_unreachable(entry: str) -> tuple[str, str | None]:
    """``NAME[@WHERE]`` as (normalised server, cluster or node name, or None for everywhere)."""
    server, at, where = entry.rpartition("@") if "@" in entry else (entry, "", "")
    if at and not where.strip():
        raise ValueError(f"{entry!r}: expected NAME@CLUSTER or NAME@NODE after '@'")
    return _server_name(server), where.strip() or None


def _join(server: str, where: str | None) -> str:
    """The canonical ``NAME[@WHERE]`` spelling."""
    return server if where is None else f"{server}@{where}"


def cluster_name(index: int) -> str:
    """The name of the ``index``-th cluster (``sim-0000``)."""
    return f"sim-{index:04d}"
