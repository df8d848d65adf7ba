"""What discovery finds on a cluster: plain values that ``ontap`` makes and ``plan`` reads.

Neutral ground between the two, so that neither imports the other.
"""

from __future__ import annotations

import dataclasses
from typing import Final

__all__ = [
    "CONNECTIVITY_SINCE",
    "RESTORE_SINCE",
    "ClusterState",
    "LiveKeyManager",
    "OntapVersion",
]


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class OntapVersion:
    """An ONTAP release, ordered (``9.8`` < ``9.13``)."""

    generation: int
    major: int
    minor: int = 0

    def __str__(self) -> str:
        """``9.13.1``."""
        return f"{self.generation}.{self.major}.{self.minor}"


CONNECTIVITY_SINCE: Final = OntapVersion(9, 7)
"""Key servers show ``connectivity.cluster_availability`` (and the nodes not available)."""
RESTORE_SINCE: Final = OntapVersion(9, 13)
"""``POST .../restore`` (and the keys per node, from 9.11, with ``restored``)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LiveKeyManager:
    """A key manager as discovered on the cluster."""

    uuid: str
    svm: str | None
    """The SVM's name; None for the cluster-scoped key manager."""
    external: bool
    servers: tuple[str, ...] = ()
    """Primary servers present, normalised."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterState:
    """What discovery found on one cluster."""

    version: OntapVersion
    key_managers: tuple[LiveKeyManager, ...]
    svms: frozenset[str] | None = None
    """Every SVM name, when discovery needed it (an explicit name had no key manager)."""
    uuid: str | None = None
    """The cluster's own uuid, when it gave one: one cluster under two addresses shows it."""
