"""Desired x live -> what to do for each target. Pure: no I/O, no clock.

A cluster's plan is a tuple of ``Decision``s, one per target. The missing servers of one
key manager are grouped into ``Batch``es: one POST each (a ``records[]`` POST where the
ONTAP version takes it), with outcomes still reported per server.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from enum import StrEnum

from bulkkm.inventory import Cluster, DesiredServer, SelectorKind
from bulkkm.state import (
    CONNECTIVITY_SINCE,
    RESTORE_SINCE,
    ClusterState,
    LiveKeyManager,
    OntapVersion,
)

__all__ = [
    "MAX_PRIMARIES",
    "Action",
    "ApprovedKeyManager",
    "ApprovedPlan",
    "Batch",
    "Decision",
    "KeyManagerPlan",
    "Operation",
    "Remove",
    "Step",
    "TargetId",
    "Verify",
    "approved_only",
    "batches",
    "keep_retired",
    "key_manager_plans",
    "plan_cluster",
    "removal_blocker",
]

MAX_PRIMARIES = 4


SECONDARIES_SINCE = OntapVersion(9, 8)
# The records[] body is documented without a release; 9.8, with secondaries, is an inference.
RECORDS_SINCE = OntapVersion(9, 8)
MULTITENANT_SINCE = OntapVersion(9, 6)


def removal_blocker(version: OntapVersion, *, verify_keys: bool) -> tuple[str, str] | None:
    """Why a cluster's retired servers may not be removed at all (token, sentence), or None.

    Removing needs a verification first: connectivity from 9.7, restoring keys from 9.13.
    """
    if version < CONNECTIVITY_SINCE:
        return "ontap_too_old", (
            f"verifying key servers needs ONTAP {CONNECTIVITY_SINCE} (cluster runs {version})"
        )
    if verify_keys and version < RESTORE_SINCE:
        return "ontap_too_old", (
            f"--verify-keys needs ONTAP {RESTORE_SINCE} (cluster runs {version})"
        )
    return None


class Operation(StrEnum):
    """What a target asks of its key manager: part of its identity across runs."""

    ADD = "add"
    REMOVE = "remove"


class Action(StrEnum):
    """What the plan decided for a target."""

    ADD = "add"
    PRESENT = "present"
    BLOCKED = "blocked"
    REMOVE = "remove"
    """A retired server the key manager still has: DELETE it (``migrate``)."""
    ABSENT = "absent"
    """A retired server the key manager no longer has: nothing to do."""


TargetId = tuple[str, str | None, str, Operation]
"""(cluster, svm or None for the cluster scope, server, operation)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One target and what to do about it."""

    cluster: str
    svm: str | None
    key_manager_uuid: str | None
    desired: DesiredServer
    action: Action
    reason: str | None = None
    """For ``blocked``: a short token (``too_many_servers``, ``no_external_key_manager`` …)."""
    detail: str | None = None
    """For ``blocked``: the sentence an operator reads."""
    operation: Operation = Operation.ADD

    @property
    def server(self) -> str:
        """The target's key server."""
        return self.desired.server

    @property
    def target(self) -> TargetId:
        """The target's identity: an addition and a removal of one server are two targets."""
        return (self.cluster, self.svm, self.server, self.operation)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """The missing servers of one key manager that go out in one POST."""

    cluster: str
    svm: str | None
    key_manager_uuid: str
    decisions: tuple[Decision, ...]

    @property
    def servers(self) -> tuple[DesiredServer, ...]:
        """The key servers this POST adds."""
        return tuple(d.desired for d in self.decisions)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Verify:
    """A step that checks servers are present and reachable from every node before going on."""

    servers: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Remove:
    """A step that DELETEs one retired server."""

    decision: Decision


Step = Batch | Verify | Remove
"""One step of a key manager's plan: a POST of a batch, a verification, or one removal."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeyManagerPlan:
    """The ordered steps for one key manager; a step starts only once the one before ended."""

    cluster: str
    svm: str | None
    key_manager_uuid: str
    steps: tuple[Step, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApprovedKeyManager:
    """One key manager's approved additions and the live state they were computed from."""

    svm: str | None
    fingerprint: tuple[str, ...]
    """The primary servers it had when the plan was made, sorted."""
    add: tuple[str, ...]
    remove: tuple[str, ...] = ()
    """Retired servers to remove (``migrate --plan`` only)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApprovedPlan:
    """A saved plan: apply does these additions and nothing else."""

    plan_id: str
    clusters: dict[str, dict[str, ApprovedKeyManager]]
    """cluster -> key manager uuid -> what to add."""


def plan_cluster(
    cluster: Cluster, state: ClusterState, *, retire: bool = False
) -> tuple[Decision, ...]:
    """Every target of ``cluster`` with its action, from the discovered ``state``.

    ``retire`` (``migrate``, ``check``): the retired servers are targets too, ``remove``
    where the key manager still has them, ``absent`` where it has not.

    A key manager is planned once: when the cluster lists one uuid under two SVMs (or under
    an SVM and the cluster scope), the first in plan order gets it; the targets of the other
    are ``blocked`` (``duplicate_key_manager``), as no POST could tell the two apart.
    """
    by_svm = {km.svm: km for km in state.key_managers}
    decisions: list[Decision] = []
    planned: dict[str, str | None] = {}
    """Key-manager uuid -> the SVM (None: the cluster scope) it is planned for."""

    def plan(
        svm: str | None,
        km: LiveKeyManager | None,
        desired: tuple[DesiredServer, ...],
        retired: tuple[str, ...],
    ) -> None:
        retired = retired if retire else ()
        if km is not None and km.uuid in planned:
            first = planned[km.uuid]
            decisions.extend(_listed_twice(cluster, svm, km, first, desired))
            gone = tuple(DesiredServer(server=r) for r in retired)
            decisions.extend(
                _listed_twice(cluster, svm, km, first, gone, operation=Operation.REMOVE)
            )
            return
        if km is not None:
            planned[km.uuid] = svm
        decisions.extend(_decide(cluster, state, svm, km, desired, retired=retired))

    if cluster.cluster_scope:
        plan(None, by_svm.get(None), cluster.key_servers, cluster.retire_servers)
    explicit = {s.pattern for s in cluster.svms if s.kind is SelectorKind.NAME}
    for svm in sorted({km.svm for km in state.key_managers if km.svm is not None} | explicit):
        selector = cluster.selector_for(svm)
        if selector is None:
            continue
        km = by_svm.get(svm)
        if selector.kind is not SelectorKind.NAME and (km is None or not km.external):
            continue  # `all` and globs select only SVMs that have an external key manager
        plan(svm, km, selector.key_servers, selector.retire_servers)
    return tuple(decisions)


def keep_retired(
    cluster: Cluster, state: ClusterState, reason: str, detail: str
) -> tuple[Decision, ...]:
    """``migrate`` where nothing may be removed: the additions as ``apply`` plans them (no
    retirement makes room), every retired server still there ``blocked`` with ``reason``."""
    additions = {d.target: d for d in plan_cluster(cluster, state)}
    out: list[Decision] = []
    for d in plan_cluster(cluster, state, retire=True):
        if d.operation is Operation.ADD:
            out.append(additions.get(d.target, d))
        elif d.action is Action.REMOVE:
            out.append(
                dataclasses.replace(
                    d, action=Action.BLOCKED, reason=reason, detail=f"kept: {detail}"
                )
            )
        else:
            out.append(d)
    return tuple(out)


def _listed_twice(
    cluster: Cluster,
    svm: str | None,
    km: LiveKeyManager,
    first: str | None,
    desired: tuple[DesiredServer, ...],
    *,
    operation: Operation = Operation.ADD,
) -> list[Decision]:
    """The targets of a key manager already planned under another SVM: blocked, nothing sent.

    They carry no key-manager uuid: which SVM the uuid belongs to is what is in doubt, and the
    write (if any) is the first SVM's.
    """
    where = f"SVM {svm!r}" if svm is not None else "the cluster scope"
    there = f"SVM {first!r}" if first is not None else "the cluster scope"
    detail = (
        f"the cluster lists key manager {km.uuid[:64]!r} for {there} and for {where}: "
        f"planned for {there} only"
    )
    return [
        Decision(
            cluster=cluster.name,
            svm=svm,
            key_manager_uuid=None,
            desired=d,
            action=Action.BLOCKED,
            reason="duplicate_key_manager",
            detail=detail,
            operation=operation,
        )
        for d in desired
    ]


def _decide(
    cluster: Cluster,
    state: ClusterState,
    svm: str | None,
    km: LiveKeyManager | None,
    desired: tuple[DesiredServer, ...],
    *,
    retired: tuple[str, ...] = (),
) -> list[Decision]:
    """The decisions for one key manager: its additions, then its removals."""
    missing = [d for d in desired if km is None or d.server not in km.servers]
    leaving = [r for r in retired if km is not None and r in km.servers]
    reason, detail = _blocker(state, svm, km, missing, len(leaving)) or (None, None)

    def decision(d: DesiredServer) -> Decision:
        if km is not None and d.server in km.servers:
            return Decision(
                cluster=cluster.name,
                svm=svm,
                key_manager_uuid=km.uuid,
                desired=d,
                action=Action.PRESENT,
            )
        return Decision(
            cluster=cluster.name,
            svm=svm,
            key_manager_uuid=km.uuid if km else None,
            desired=d,
            action=Action.BLOCKED if reason else Action.ADD,
            reason=reason,
            detail=detail,
        )

    def removal(server: str) -> Decision:
        # A removal waits on its replacements: where they cannot be added, nothing is removed.
        if reason is not None and server in leaving:
            action = Action.BLOCKED
        else:
            action = Action.REMOVE if server in leaving else Action.ABSENT
        blocked = action is Action.BLOCKED
        return Decision(
            cluster=cluster.name,
            svm=svm,
            key_manager_uuid=km.uuid if km else None,
            desired=DesiredServer(server=server),
            action=action,
            reason=reason if blocked else None,
            detail=f"kept: {detail}" if blocked else None,
            operation=Operation.REMOVE,
        )

    return [decision(d) for d in desired] + [removal(r) for r in retired]


def _blocker(
    state: ClusterState,
    svm: str | None,
    km: LiveKeyManager | None,
    missing: list[DesiredServer],
    leaving: int = 0,
) -> tuple[str, str] | None:
    """Why the missing servers of one key manager cannot be added (token, sentence), or None.

    ``leaving``: retired servers it has, which a migration removes as the new ones come.
    """
    if not missing:
        return None
    where = f"SVM {svm!r}" if svm is not None else "the cluster"
    if svm is not None and km is None and state.svms is not None and svm not in state.svms:
        return "svm_not_found", f"SVM {svm!r} not found on the cluster"
    if km is None or not km.external:
        return "no_external_key_manager", f"no external key manager on {where}"
    if svm is not None and state.version < MULTITENANT_SINCE:
        return "ontap_too_old", (
            f"SVM key managers need ONTAP {MULTITENANT_SINCE} (cluster runs {state.version})"
        )
    if any(d.secondary_key_servers for d in missing) and state.version < SECONDARIES_SINCE:
        return "ontap_too_old", (
            f"secondary_key_servers need ONTAP {SECONDARIES_SINCE} (cluster runs {state.version})"
        )
    if len(km.servers) + len(missing) - leaving > MAX_PRIMARIES:
        retiring = f" - {leaving} retired" if leaving else ""
        return "too_many_servers", (
            f"would exceed {MAX_PRIMARIES} primary key servers "
            f"({len(km.servers)} present + {len(missing)} missing{retiring})"
        )
    return None


def batches(decisions: Iterable[Decision], version: OntapVersion) -> tuple[Batch, ...]:
    """Group the ``add`` decisions per key manager; one server per POST before 9.8."""
    groups: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.action is Action.ADD and d.key_manager_uuid is not None:
            groups.setdefault(d.key_manager_uuid, []).append(d)
    together = version >= RECORDS_SINCE
    out: list[Batch] = []
    for uuid, group in groups.items():
        chunks = [group] if together else [[d] for d in group]
        out += [
            Batch(cluster=c[0].cluster, svm=c[0].svm, key_manager_uuid=uuid, decisions=tuple(c))
            for c in chunks
        ]
    return tuple(out)


def key_manager_plans(
    decisions: Iterable[Decision], state: ClusterState, *, migrate: bool = False
) -> tuple[KeyManagerPlan, ...]:
    """Each key manager's ordered steps.

    ``apply``: its additions, batched as ``batches`` does. ``migrate``: add, verify, then
    remove the retired servers one at a time; when 4 primaries leave no room, one removal
    makes room for the next addition. At no step has a key manager 0 or more than 4
    primaries, and no removal comes before a verification of every server added so far.
    """
    groups: dict[str, list[Decision]] = {}
    for d in decisions:
        if d.action in (Action.ADD, Action.REMOVE) and d.key_manager_uuid is not None:
            groups.setdefault(d.key_manager_uuid, []).append(d)
    live = {km.uuid: km for km in state.key_managers}
    plans: list[KeyManagerPlan] = []
    for uuid, group in groups.items():
        km = live.get(uuid)
        present = km.servers if km is not None else ()
        steps = (
            _migration_steps(group, present, state.version)
            if migrate
            else batches(group, state.version)
        )
        plans.append(
            KeyManagerPlan(
                cluster=group[0].cluster, svm=group[0].svm, key_manager_uuid=uuid, steps=steps
            )
        )
    return tuple(plans)


def _migration_steps(
    group: list[Decision], present: tuple[str, ...], version: OntapVersion
) -> tuple[Step, ...]:
    """Add, verify, remove for one key manager, interleaved within the 4-primary limit."""
    adds = [d for d in group if d.action is Action.ADD]
    removes = [d for d in group if d.action is Action.REMOVE]
    retired = {d.server for d in removes}
    kept = [s for s in present if s not in retired]
    """Present servers that stay: with the additions, what a verification checks."""
    steps: list[Step] = []
    count = len(present)
    # Servers that stay were verified by no one in this run (a resumed run, or servers added
    # before it): they are verified before the first removal, as additions are.
    verified = not kept

    def verify() -> None:
        nonlocal verified
        servers = tuple(sorted({*kept, *(d.server for d in added)}))
        if servers and not verified:
            steps.append(Verify(servers=servers))
        verified = True

    added: list[Decision] = []
    while adds or removes:
        room = MAX_PRIMARIES - count
        if adds and room > 0:
            chunk, adds = adds[:room], adds[room:]
            steps += batches(chunk, version)
            added += chunk
            count += len(chunk)
            verified = False
        elif removes and count > 1:
            verify()
            steps.append(Remove(decision=removes.pop(0)))
            count -= 1
        else:  # cannot happen for a plan _decide made: it blocks what cannot fit
            break
    verify()
    return tuple(steps)


def approved_only(
    cluster: str,
    decisions: Iterable[Decision],
    state: ClusterState,
    approved: ApprovedPlan,
    *,
    removals: bool = False,
) -> tuple[tuple[Decision, ...], tuple[Decision, ...]]:
    """A saved plan's changes on one cluster: (still valid, drifted).

    Only the additions (and with ``removals``, ``migrate``, the removals) the plan approved
    are kept. A key manager drifted when its servers are no longer those the plan saw (its
    fingerprint) with some of the approved changes made: a server came that the plan does
    not add, or one went that it does not remove. Its approved changes are then not made
    (drifted). Otherwise an approved change already made (a run of this plan killed before
    it could report it, say) is kept as it is now, present or absent, and a resumed run
    carries its old line. Key managers the plan did not change are left out altogether.
    """
    live = {km.uuid: km for km in state.key_managers}
    current = {(d.key_manager_uuid, d.server, d.operation): d for d in decisions}
    kept: list[Decision] = []
    drifted: list[Decision] = []
    for uuid, km in approved.clusters.get(cluster, {}).items():
        seen = set(km.fingerprint)
        now = set(live[uuid].servers) if uuid in live else None
        on_course = now is not None and now - seen <= set(km.add) and seen - now <= set(km.remove)
        changes = [(server, Operation.ADD, (Action.ADD, Action.PRESENT)) for server in km.add]
        if removals:
            changes += [
                (server, Operation.REMOVE, (Action.REMOVE, Action.ABSENT)) for server in km.remove
            ]
        for server, operation, actions in changes:
            d = current.get((uuid, server, operation))
            if on_course and d is not None and d.action in actions:
                kept.append(d)
            else:
                drifted.append(
                    Decision(
                        cluster=cluster,
                        svm=km.svm,
                        key_manager_uuid=uuid,
                        desired=DesiredServer(server=server),
                        action=actions[0],
                        operation=operation,
                    )
                )
    return tuple(kept), tuple(drifted)
