"""The initial state of every simulated cluster, drawn from the fleet's seed.

Each cluster has its own ``random.Random`` seeded from (seed, index), so a cluster's state
does not depend on how many clusters the fleet has, nor on anything drawn at run time.
"""

from __future__ import annotations

import random
import uuid
from typing import Final

from bulkkm.simulator._model import Mode, Scope, SimCluster, SimKeyManager, SimSvm
from bulkkm.simulator._spec import FleetSpec, cluster_name

__all__ = ["build_cluster"]

# Mixed ONTAP versions, biased toward recent releases as a real fleet is.
_VERSIONS: Final = ("9.6.0", "9.7.0", "9.8.1", "9.9.1", "9.10.1", "9.11.1", "9.12.1", "9.13.1",
                    "9.14.1", "9.15.1", "9.16.1")  # fmt: skip
_VERSION_WEIGHTS: Final = (1, 1, 2, 2, 3, 4, 5, 7, 8, 9, 9)
# How many primaries a key manager starts with when the spec does not say.
_SERVER_COUNTS: Final = (0, 1, 2, 3, 4)
_SERVER_WEIGHTS: Final = (2, 4, 3, 2, 1)


def _uuid(rng: random.Random) -> str:
    """A version-4 UUID drawn from ``rng``."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _servers(rng: random.Random, count: int, *, secondaries: bool) -> dict[str, tuple[str, ...]]:
    """``count`` existing primaries, some with secondaries when the version allows them."""
    servers: dict[str, tuple[str, ...]] = {}
    for n in range(1, count + 1):
        extra: tuple[str, ...] = ()
        if secondaries and rng.random() < 0.25:
            extra = tuple(f"kms-old-{n}-dr{k}.example.com" for k in range(1, rng.randint(1, 2) + 1))
        servers[f"kms-old-{n}.example.com:5696"] = extra
    return servers


def _key_manager(
    rng: random.Random, spec: FleetSpec, *, scope: Scope, svm: SimSvm | None, mode: Mode, v98: bool
) -> SimKeyManager:
    """One key manager; external ones get their initial primaries."""
    servers: dict[str, tuple[str, ...]] = {}
    if mode is Mode.EXTERNAL:
        count = spec.initial_servers
        if count is None:
            count = rng.choices(_SERVER_COUNTS, weights=_SERVER_WEIGHTS)[0]
        servers = _servers(rng, count, secondaries=v98)
    return SimKeyManager(uuid=_uuid(rng), scope=scope, svm=svm, mode=mode, servers=servers)


def build_cluster(spec: FleetSpec, index: int) -> SimCluster:
    """The ``index``-th cluster of the fleet, as it is before anything talks to it."""
    rng = random.Random(f"bulkkm-simulator:{spec.seed}:{index}")
    name = cluster_name(index)
    version = rng.choices(_VERSIONS, weights=_VERSION_WEIGHTS)[0]
    v98 = tuple(int(p) for p in version.split(".")) >= (9, 8, 0)
    cluster_uuid = _uuid(rng)
    mode = Mode.EXTERNAL if rng.random() < spec.cluster_external_ratio else Mode.ONBOARD
    cluster_km = _key_manager(rng, spec, scope=Scope.CLUSTER, svm=None, mode=mode, v98=v98)
    key_managers = {cluster_km.uuid: cluster_km}
    svms: list[SimSvm] = []
    for i in range(spec.svms):
        svm = SimSvm(name=f"svm{i:03d}", uuid=_uuid(rng))
        svms.append(svm)
        draw = rng.random()
        if draw < spec.external_ratio:
            km_mode = Mode.EXTERNAL
        elif draw < spec.external_ratio + spec.onboard_ratio:
            km_mode = Mode.ONBOARD
        else:
            continue
        km = _key_manager(rng, spec, scope=Scope.SVM, svm=svm, mode=km_mode, v98=v98)
        key_managers[km.uuid] = km
    return SimCluster(
        name=name,
        uuid=cluster_uuid,
        version=version,
        username=spec.username,
        password=spec.password,
        svms=svms,
        key_managers=key_managers,
        faults=spec.faults_for(name),
    )
