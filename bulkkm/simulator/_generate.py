"""The initial state of every simulated cluster, drawn from the fleet's seed, and its trouble.

Each cluster has its own ``random.Random`` seeded from (seed, index), so a cluster's state
does not depend on how many clusters the fleet has, nor on anything drawn at run time.
Nodes and keys come from streams of their own, so adding them changed nothing else.
Names come from the spec (``sim-0000``, ``svm000``) or from a ``Layout`` (an inventory's
clusters and SVMs). ``seeded_trouble`` says which targets of an inventory the generated
state blocks, and why, from the state itself.
"""

from __future__ import annotations

import collections
import dataclasses
import fnmatch
import random
import string
import uuid
from collections.abc import Mapping, Sequence
from typing import Final

from bulkkm.inventory import Cluster, DesiredServer, SelectorKind
from bulkkm.simulator._model import (
    Mode,
    Scope,
    SimCluster,
    SimKey,
    SimKeyManager,
    SimNode,
    SimSvm,
)
from bulkkm.simulator._spec import FleetSpec, cluster_name, parse_unreachable

__all__ = [
    "Layout",
    "Trouble",
    "build_cluster",
    "layout_of",
    "seeded_trouble",
    "unknown_places",
]

# Mixed ONTAP versions, biased toward recent releases as a real fleet is.
_VERSIONS: Final = ("9.6.0", "9.7.0", "9.8.1", "9.9.1", "9.10.1", "9.11.1", "9.12.1", "9.13.1",
                    "9.14.1", "9.15.1", "9.16.1")  # fmt: skip
_VERSION_WEIGHTS: Final = (1, 1, 2, 2, 3, 4, 5, 7, 8, 9, 9)
# The clean profile: 9.8 and later, where secondary key servers and records[] POSTs exist.
_CLEAN_FROM: Final = _VERSIONS.index("9.8.1")
# How many primaries a key manager starts with when the spec does not say.
_SERVER_COUNTS: Final = (0, 1, 2, 3, 4)
_SERVER_WEIGHTS: Final = (2, 4, 3, 2, 1)
_MAX_PRIMARIES: Final = 4
_SECONDARIES_SINCE: Final = 8  # ONTAP 9.8
_PER_GLOB: Final = 2  # SVMs created to match each glob of an inventory
_KEYS: Final = (1, 3)  # keys an external key manager with servers holds, at least and at most


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Layout:
    """The names of one cluster taken from an inventory, instead of ``sim-0000``/``svm000``."""

    name: str
    svms: tuple[str, ...]
    username: str | None = None
    """The login the inventory uses for this cluster; None: the spec's."""


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
            if spec.headroom is not None:
                count = min(count, _MAX_PRIMARIES - spec.headroom)
        servers = _servers(rng, count, secondaries=v98)
    return SimKeyManager(uuid=_uuid(rng), scope=scope, svm=svm, mode=mode, servers=servers)


def _key_id(rng: random.Random) -> str:
    """An 80-hex-digit key id shaped like ONTAP's."""
    return f"{0:016x}0200000000000100{rng.getrandbits(128):032x}{0:016x}"


def _keys(rng: random.Random, km: SimKeyManager, owner: str, unreplicated: tuple[str, ...]) -> None:
    """Seed the keys of an external key manager, stored on each of its servers."""
    if km.mode is not Mode.EXTERNAL or not km.servers:
        return
    key_type = "nse_ak" if km.scope is Scope.CLUSTER else "vek"
    count = rng.randint(*_KEYS)
    km.keys = [
        SimKey(
            key_id=_key_id(rng),
            key_type=key_type,
            key_tag=f"{owner}-key{n}",
            holders=set(km.servers),
        )
        for n in range(1, count + 1)
    ]
    for server in unreplicated:
        if server in km.servers:
            km.keys.append(
                SimKey(
                    key_id=_key_id(rng),
                    key_type=key_type,
                    key_tag=f"{owner}-only-{server}",
                    holders={server},
                    replicated=False,
                )
            )


def _nodes(spec: FleetSpec, index: int, name: str) -> list[SimNode]:
    """The cluster's nodes, and the key servers each cannot reach."""
    rng = random.Random(f"bulkkm-simulator:{spec.seed}:{index}:nodes")
    nodes = [SimNode(name=f"{name}-{n:02d}", uuid=_uuid(rng)) for n in range(1, spec.nodes + 1)]
    for entry in spec.unreachable_servers:
        server, where = parse_unreachable(entry)
        for node in nodes:
            if where is None or where in (name, node.name):
                node.unreachable.add(server)
    return nodes


def unknown_places(spec: FleetSpec, clusters: Sequence[SimCluster]) -> list[str]:
    """The ``unreachable_servers`` entries whose cluster or node is not in ``clusters``."""
    places = {c.name for c in clusters} | {n.name for c in clusters for n in c.nodes}
    return [
        entry
        for entry in spec.unreachable_servers
        if (where := parse_unreachable(entry)[1]) is not None and where not in places
    ]


def build_cluster(spec: FleetSpec, index: int, layout: Layout | None = None) -> SimCluster:
    """The ``index``-th cluster of the fleet, as it is before anything talks to it."""
    rng = random.Random(f"bulkkm-simulator:{spec.seed}:{index}")
    clean = spec.headroom is not None
    if clean:
        version = rng.choices(_VERSIONS[_CLEAN_FROM:], weights=_VERSION_WEIGHTS[_CLEAN_FROM:])[0]
    else:
        version = rng.choices(_VERSIONS, weights=_VERSION_WEIGHTS)[0]
    v98 = tuple(int(p) for p in version.split(".")) >= (9, 8, 0)
    cluster_uuid = _uuid(rng)
    mode = Mode.EXTERNAL if rng.random() < spec.cluster_external_ratio or clean else Mode.ONBOARD
    cluster_km = _key_manager(rng, spec, scope=Scope.CLUSTER, svm=None, mode=mode, v98=v98)
    key_managers = {cluster_km.uuid: cluster_km}
    svm_names = layout.svms if layout else tuple(f"svm{i:03d}" for i in range(spec.svms))
    svms: list[SimSvm] = []
    for svm_name in svm_names:
        svm = SimSvm(name=svm_name, uuid=_uuid(rng))
        svms.append(svm)
        draw = rng.random()
        if draw < spec.external_ratio or clean:
            km_mode = Mode.EXTERNAL
        elif draw < spec.external_ratio + spec.onboard_ratio:
            km_mode = Mode.ONBOARD
        else:
            continue
        km = _key_manager(rng, spec, scope=Scope.SVM, svm=svm, mode=km_mode, v98=v98)
        key_managers[km.uuid] = km
    name = layout.name if layout else cluster_name(index)
    key_rng = random.Random(f"bulkkm-simulator:{spec.seed}:{index}:keys")
    for km in key_managers.values():
        _keys(key_rng, km, km.svm.name if km.svm else name, spec.unreplicated_servers)
    return SimCluster(
        name=name,
        uuid=cluster_uuid,
        version=version,
        username=(layout.username if layout else None) or spec.username,
        password=spec.password,
        svms=svms,
        key_managers=key_managers,
        # Overrides are keyed by position (sim-0000 is the first cluster), whatever its name.
        faults=spec.faults_for(cluster_name(index)),
        nodes=_nodes(spec, index, name),
        new_server_copies=spec.new_server_copies,
    )


def _matching(pattern: str, variant: int) -> str | None:
    """A name ``pattern`` (an fnmatch glob) selects, different for each ``variant``."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        end = pattern.find("]", i + 2) if char == "[" else -1
        if char == "*":
            out.append(str(variant))
        elif char == "?":
            out.append(str(variant % 10))
        elif end != -1:
            chars = [c for c in string.ascii_lowercase + string.digits + "_-"
                     if fnmatch.fnmatchcase(c, pattern[i : end + 1])]  # fmt: skip
            if not chars:
                return None
            out.append(chars[(variant - 1) % len(chars)])
            i = end
        else:
            out.append(char)
        i += 1
    name = "".join(out)
    return name if fnmatch.fnmatchcase(name, pattern) else None


def layout_of(cluster: Cluster, *, generic: int) -> Layout:
    """The SVMs a cluster of an inventory needs: its named ones, a few per glob, ``generic``.

    ``generic`` SVMs (``svm000`` ...) exist on every cluster, as on a real one; ``all``
    selects them, globs usually do not. Glob matches that ``exclude_svms`` would drop are
    not created (they would be no target anyway).
    """
    names = [f"svm{i:03d}" for i in range(generic)]
    for selector in cluster.svms:
        if selector.kind is SelectorKind.NAME:
            names.append(selector.pattern)
        elif selector.kind is SelectorKind.GLOB:
            for variant in range(1, _PER_GLOB + 1):
                name = _matching(selector.pattern, variant)
                if name is not None and cluster.selector_for(name) is not None:
                    names.append(name)
    return Layout(name=cluster.name, svms=tuple(dict.fromkeys(names)), username=cluster.username)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Trouble:
    """What the generated state does to an inventory's targets, counted from the state."""

    blocked: Mapping[str, int]
    """Targets ``bulkkm plan`` reports ``blocked``, by reason."""
    full_key_managers: int
    """Selected key managers with too many primaries for the servers still missing."""
    not_external: int
    """Cluster scopes, or SVMs named in the inventory, without an external key manager."""
    old_clusters: int
    """Clusters older than 9.8 asked for secondary key servers."""
    skipped_svms: int
    """SVMs ``all`` or a glob matches but skips: onboard key management, or none."""
    dead: tuple[str, ...]
    """Clusters whose port is closed: discovery fails, no targets."""
    interleaved: int = 0
    """Key managers whose new servers fit only as retired ones go: ``migrate`` interleaves,
    ``apply`` (which never removes) blocks them (``too_many_servers``)."""

    def __bool__(self) -> bool:
        """Whether anything keeps ``apply`` from exit 0."""
        return bool(self.blocked or self.dead)


_Unit = tuple[str | None, tuple[DesiredServer, ...], tuple[str, ...], bool]


def _units(sim: SimCluster, cluster: Cluster) -> list[_Unit]:
    """The key managers the inventory asks about: (SVM or None, desired servers, retired
    servers, by name)."""
    units: list[_Unit] = []
    if cluster.cluster_scope:
        units.append((None, cluster.key_servers, cluster.retire_servers, True))
    named = {s.pattern for s in cluster.svms if s.kind is SelectorKind.NAME}
    for name in sorted({svm.name for svm in sim.svms} | named):
        selector = cluster.selector_for(name)
        if selector is not None:
            by_name = selector.kind is SelectorKind.NAME
            units.append((name, selector.key_servers, selector.retire_servers, by_name))
    return units


def seeded_trouble(clusters: Sequence[SimCluster], inventory: Sequence[Cluster]) -> Trouble:
    """Why targets of ``inventory`` (same names as ``clusters``) cannot be added as generated.

    As ``bulkkm plan`` sees it: the retired servers a key manager has make room for its new
    ones (``migrate`` removes them as the new ones come).
    """
    blocked: collections.Counter[str] = collections.Counter()
    full = not_external = skipped = interleaved = 0
    old: set[str] = set()
    dead: list[str] = []
    by_name = {sim.name: sim for sim in clusters}
    for cluster in inventory:
        sim = by_name.get(cluster.name)
        if sim is None:
            continue
        if sim.faults.dead:
            dead.append(sim.name)
            continue
        names = {s.name for s in sim.svms}
        for svm, desired, retire, named in _units(sim, cluster):
            km = sim.key_manager_of(svm)
            external = km is not None and km.mode is Mode.EXTERNAL
            if not named and not external:
                skipped += 1
                continue
            missing = [d for d in desired if km is None or d.server not in km.servers]
            if not missing:
                continue
            if svm is not None and svm not in names:
                blocked["svm_not_found"] += len(missing)
            elif km is None or not external:
                not_external += 1
                blocked["no_external_key_manager"] += len(missing)
            elif any(d.secondary_key_servers for d in missing) and not sim.at_least(
                _SECONDARIES_SINCE
            ):
                old.add(sim.name)
                blocked["ontap_too_old"] += len(missing)
            elif len(km.servers) + len(missing) > _MAX_PRIMARIES:
                leaving = sum(1 for server in retire if server in km.servers)
                if len(km.servers) + len(missing) - leaving > _MAX_PRIMARIES:
                    full += 1
                    blocked["too_many_servers"] += len(missing)
                else:
                    interleaved += 1
    return Trouble(
        blocked=dict(blocked),
        full_key_managers=full,
        not_external=not_external,
        old_clusters=len(old),
        skipped_svms=skipped,
        dead=tuple(dead),
        interleaved=interleaved,
    )
