"""The resolved inventory: frozen values, every default and group already applied."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path

from bulkkm.rollout import WaveSize, Window
from bulkkm.secret import Secret
from bulkkm.servers import join_host_port

__all__ = [
    "Cluster",
    "DesiredServer",
    "Inventory",
    "Limits",
    "Rollout",
    "SelectorKind",
    "SvmSelector",
    "Tls",
]

_GLOB_MAGIC = re.compile(r"[*?[]")
"""What makes a pattern a glob (``fnmatch``'s special characters); without them it is a name."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DesiredServer:
    """One key server a key manager must have; names already normalised (``host:port``)."""

    server: str
    secondary_key_servers: tuple[str, ...] = ()
    password: Secret | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Tls:
    """How to reach a cluster's HTTPS endpoint; paths are absolute once resolved."""

    verify: bool = True
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The load bulkkm may put on one cluster."""

    concurrency: int = 4
    rate: float | None = None
    timeout: float = 30.0


class SelectorKind(StrEnum):
    """How an entry of ``svms:`` names SVMs."""

    NAME = "name"
    GLOB = "glob"
    ALL = "all"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SvmSelector:
    """One entry of a cluster's ``svms:`` and the key servers its SVMs must have.

    Resolved against the live SVM list by the engine: a ``NAME`` that is not there, or has
    no external key manager, is a blocked target; ``GLOB`` and ``ALL`` select only SVMs
    that have an external key manager.
    """

    kind: SelectorKind
    pattern: str
    key_servers: tuple[DesiredServer, ...]
    retire_servers: tuple[str, ...] = ()
    """Old primaries ``migrate`` removes from these SVMs (normalised ``host:port``).

    Never one of ``key_servers`` (their secondaries included): the inventory refuses that.
    """

    def matches(self, svm_name: str) -> bool:
        """Whether this entry selects the SVM called ``svm_name``."""
        if self.kind is SelectorKind.NAME:
            return svm_name == self.pattern
        return self.kind is SelectorKind.ALL or fnmatch.fnmatchcase(svm_name, self.pattern)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Cluster:
    """One cluster of the fleet, fully resolved."""

    name: str
    host: str
    port: int = 443
    username: str | None = None
    password: Secret | None = None
    tls: Tls = Tls()
    limits: Limits = Limits()
    groups: tuple[str, ...] = ()
    svms: tuple[SvmSelector, ...] = ()
    exclude_svms: tuple[str, ...] = ()
    cluster_scope: bool = False
    key_servers: tuple[DesiredServer, ...] = ()
    """The cluster's own resolved key servers: those of its cluster-scoped key manager."""
    retire_servers: tuple[str, ...] = ()
    """Old primaries ``migrate`` removes from the cluster-scoped key manager; normalised
    ``host:port``, never one of ``key_servers``; always empty without ``cluster_scope``."""
    window: Window | None = None
    """When the cluster may be changed; None: any time."""
    wave: int | None = None
    """The rollout wave (1-based) this cluster is pinned to, e.g. a canary in wave 1."""
    region: str | None = None
    """Where the cluster is reachable from: ``--temporal`` runs send it to the workers of
    this region (task queue ``bulkkm-REGION``); None: the in-process engine only."""

    @property
    def address(self) -> str:
        """``host:port`` as written in URLs (IPv6 in brackets)."""
        return join_host_port(self.host, self.port)

    def selector_for(self, svm_name: str) -> SvmSelector | None:
        """The entry that selects ``svm_name``: explicit names first, then globs in order."""
        if any(fnmatch.fnmatchcase(svm_name, pattern) for pattern in self.exclude_svms):
            return None
        named = [s for s in self.svms if s.kind is SelectorKind.NAME and s.matches(svm_name)]
        if named:
            return named[0]
        return next((s for s in self.svms if s.matches(svm_name)), None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Rollout:
    """The inventory's ``rollout:`` settings; command-line options override each."""

    waves: tuple[WaveSize, ...] | None = None
    wave_order: str | None = None
    max_fail_percent: float | None = None
    max_failures: int | None = None
    pause_between_waves: float | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Inventory:
    """A validated fleet file."""

    path: Path
    sha256: str
    clusters: tuple[Cluster, ...]
    warnings: tuple[str, ...] = ()
    rollout: Rollout = Rollout()

    def filter(self, patterns: tuple[str, ...]) -> Inventory:
        """A new inventory with only the clusters whose name matches one of the globs."""
        if not patterns:
            return self
        # One set lookup for the patterns that are plain names and one compiled regex for the
        # rest: a glob at a time per cluster is quadratic (10,000 x 5,000 names: seconds).
        names = frozenset(p for p in patterns if not _GLOB_MAGIC.search(p))
        globs = [fnmatch.translate(p) for p in patterns if p not in names]
        match = re.compile("|".join(globs)).match if globs else None
        kept = tuple(
            c
            for c in self.clusters
            if c.name in names or (match is not None and match(c.name) is not None)
        )
        return dataclasses.replace(self, clusters=kept)

    def only(self, names: Iterable[str]) -> Inventory:
        """A new inventory with only the clusters named (exact names, not globs), in order."""
        wanted = frozenset(names)
        return dataclasses.replace(
            self, clusters=tuple(c for c in self.clusters if c.name in wanted)
        )
