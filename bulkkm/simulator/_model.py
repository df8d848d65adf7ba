"""The live state of one simulated cluster: nodes, SVMs, key managers, key servers, keys, flags.

Unlike bulkkm's values these classes are mutable on purpose: they are the cluster's
configuration, changed by the REST handlers and by tests (a server added out of band, a
flag that makes ONTAP refuse). They never leave the simulator except through ``state()``.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum

from bulkkm.simulator._spec import Faults

__all__ = [
    "Mode",
    "NodeState",
    "Scope",
    "SimCluster",
    "SimKey",
    "SimKeyManager",
    "SimNode",
    "SimSvm",
    "server_state",
]


class Scope(StrEnum):
    """Where a key manager applies: the whole cluster (admin SVM) or one data SVM."""

    CLUSTER = "cluster"
    SVM = "svm"


class Mode(StrEnum):
    """The kind of key management a key manager does."""

    EXTERNAL = "external"
    ONBOARD = "onboard"


class NodeState(StrEnum):
    """Whether a node reaches a key server (ONTAP's ``key_server_state``)."""

    AVAILABLE = "available"
    NOT_RESPONDING = "not_responding"
    UNKNOWN = "unknown"


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimNode:
    """A node of the cluster; ``unreachable`` names the key servers (host:port) it cannot reach."""

    name: str
    uuid: str
    unreachable: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimKey:
    """One key in use: the key servers holding a copy, and the nodes where it is not restored.

    ``holders`` may name servers no longer configured (their copy stays on the KMS);
    ONTAP counts only the configured ones. ``replicated``: a server added later is given a
    copy (when the cluster's ``new_server_copies``); an unreplicated key lives only where it is.
    """

    key_id: str
    key_type: str
    key_tag: str
    holders: set[str]
    replicated: bool = True
    unrestored: set[str] = dataclasses.field(default_factory=set)
    """Node uuids where ``restored`` is false."""

    def held_by(self, km: SimKeyManager) -> list[str]:
        """The configured servers of ``km`` holding this key, in configuration order."""
        return [server for server in km.servers if server in self.holders]


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimSvm:
    """A data SVM."""

    name: str
    uuid: str


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimKeyManager:
    """One key manager; ``servers`` maps each primary (``host:port``) to its secondaries."""

    uuid: str
    scope: Scope
    svm: SimSvm | None
    mode: Mode
    servers: dict[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    client_certificate_missing: bool = False
    """When set, adding servers fails with 65536821 (the client certificate is not installed)."""
    keys: list[SimKey] = dataclasses.field(default_factory=list)
    available_at: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)
    """Servers added with a connect delay: node uuid -> ``time.monotonic()`` it connects at."""

    def sole_holder_of(self, server: str) -> list[SimKey]:
        """The keys no configured server but ``server`` holds (ONTAP refuses its removal)."""
        return [key for key in self.keys if key.held_by(self) == [server]]

    def state(self) -> dict[str, object]:
        """This key manager as JSON-able data."""
        return {
            "uuid": self.uuid,
            "scope": str(self.scope),
            "svm": None if self.svm is None else self.svm.name,
            "mode": str(self.mode),
            "servers": [
                {"server": server, "secondary_key_servers": list(secondaries)}
                for server, secondaries in self.servers.items()
            ],
            "client_certificate_missing": self.client_certificate_missing,
            "keys": [
                {
                    "key_id": key.key_id,
                    "holders": sorted(key.holders),
                    "replicated": key.replicated,
                    "unrestored": sorted(key.unrestored),
                }
                for key in self.keys
            ],
        }


def server_state(km: SimKeyManager, server: str, node: SimNode, now: float) -> NodeState:
    """How ``node`` sees a configured ``server`` of ``km`` at ``now`` (``time.monotonic()``)."""
    if server in node.unreachable:
        return NodeState.NOT_RESPONDING
    connects = km.available_at.get(server, {}).get(node.uuid)
    if connects is not None and now < connects:
        return NodeState.UNKNOWN
    return NodeState.AVAILABLE


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimCluster:
    """One cluster: identity, credentials, configuration, ONTAP-refusal flags and faults.

    Flags a test may set: ``metrocluster`` (SVM-scope adds fail with 65536824),
    ``multitenant_unsupported`` (65536822), ``kmip_errors`` (a primary server name ->
    the KMIP error code adding it fails with, e.g. ``"66060338"``), and on a key manager
    ``client_certificate_missing`` (65536821). Change ``password`` to get 401s.
    Migrations: ``nodes[i].unreachable`` (key servers a node cannot reach), a key
    manager's ``keys`` and their ``holders``, ``new_server_copies`` (a server added gets
    copies of the replicated keys).
    """

    name: str
    uuid: str
    version: str
    username: str
    password: str = dataclasses.field(repr=False)
    svms: list[SimSvm]
    key_managers: dict[str, SimKeyManager]
    faults: Faults
    address: str = ""
    metrocluster: bool = False
    multitenant_unsupported: bool = False
    kmip_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    nodes: list[SimNode] = dataclasses.field(default_factory=list)
    new_server_copies: bool = True

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """The ONTAP version as ``(generation, major, minor)``."""
        generation, major, minor = (int(part) for part in self.version.split("."))
        return generation, major, minor

    def at_least(self, major: int, minor: int = 0) -> bool:
        """Whether this cluster runs ONTAP 9.``major``.``minor`` or later."""
        return self.version_tuple >= (9, major, minor)

    def node(self, node_uuid: str) -> SimNode:
        """The node with this uuid; KeyError if there is none."""
        for node in self.nodes:
            if node.uuid == node_uuid:
                return node
        raise KeyError(node_uuid)

    def svm(self, name: str) -> SimSvm:
        """The data SVM called ``name``; KeyError if there is none."""
        for svm in self.svms:
            if svm.name == name:
                return svm
        raise KeyError(name)

    def key_manager_of(self, svm_name: str | None) -> SimKeyManager | None:
        """The key manager of an SVM (``None``: the cluster-scoped one), if it has one."""
        for km in self.key_managers.values():
            if (svm_name is None and km.svm is None) or (
                km.svm is not None and km.svm.name == svm_name
            ):
                return km
        return None

    def state(self) -> dict[str, object]:
        """This cluster as JSON-able data (no password)."""
        return {
            "name": self.name,
            "uuid": self.uuid,
            "address": self.address,
            "version": self.version,
            "username": self.username,
            "svms": [{"name": svm.name, "uuid": svm.uuid} for svm in self.svms],
            "nodes": [
                {"name": node.name, "uuid": node.uuid, "unreachable": sorted(node.unreachable)}
                for node in self.nodes
            ],
            "key_managers": [km.state() for km in self.key_managers.values()],
            "metrocluster": self.metrocluster,
            "multitenant_unsupported": self.multitenant_unsupported,
            "kmip_errors": dict(self.kmip_errors),
            "new_server_copies": self.new_server_copies,
            "faults": dataclasses.asdict(self.faults),
        }
