"""The plan: desired x live -> add, present or blocked, per target; batches per key manager."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulkkm.inventory import Cluster, DesiredServer, SelectorKind, SvmSelector
from bulkkm.plan import (
    Action,
    ApprovedKeyManager,
    ApprovedPlan,
    Batch,
    Decision,
    KeyManagerPlan,
    Operation,
    Remove,
    Verify,
    approved_only,
    batches,
    key_manager_plans,
    plan_cluster,
)
from bulkkm.state import ClusterState, LiveKeyManager, OntapVersion

NEW = DesiredServer(server="kms-new.example.com:5696")
NEW2 = DesiredServer(server="kms-new2.example.com:5696")
WITH_SECONDARY = DesiredServer(
    server="kms-dr.example.com:5696", secondary_key_servers=("kms-dr2:5696",)
)
RECENT = OntapVersion(9, 13, 1)


def cluster(
    *selectors: SvmSelector, cluster_scope: bool = False, exclude: tuple[str, ...] = ()
) -> Cluster:
    """A cluster selecting ``selectors``, with NEW as its own key server."""
    return Cluster(
        name="c1",
        host="127.0.0.1",
        svms=selectors,
        cluster_scope=cluster_scope,
        exclude_svms=exclude,
        key_servers=(NEW,),
    )


def select(pattern: str, *servers: DesiredServer, kind: SelectorKind | None = None) -> SvmSelector:
    """An ``svms:`` entry."""
    if kind is None:
        kind = SelectorKind.GLOB if "*" in pattern else SelectorKind.NAME
    return SvmSelector(kind=kind, pattern=pattern, key_servers=servers or (NEW,))


def km(svm: str | None, *servers: str, external: bool = True) -> LiveKeyManager:
    """A live key manager."""
    return LiveKeyManager(uuid=f"km-{svm}", svm=svm, external=external, servers=servers)


def state(*key_managers: LiveKeyManager) -> ClusterState:
    """What discovery found: a recent ONTAP with these key managers."""
    return ClusterState(version=RECENT, key_managers=key_managers)


def actions(decisions: tuple[object, ...]) -> list[tuple[str | None, str, str, str | None]]:
    """(svm, server, action, reason) for each decision, for compact assertions."""
    return [(d.svm, d.server, d.action.value, d.reason) for d in decisions]  # type: ignore[attr-defined]


def test_missing_server_is_added_and_present_one_is_not() -> None:
    """A server the key manager lacks is `add`; one it has is `present`."""
    state = ClusterState(version=RECENT, key_managers=(km("a", NEW.server), km("b")))
    got = plan_cluster(cluster(select("*")), state)
    assert actions(got) == [("a", NEW.server, "present", None), ("b", NEW.server, "add", None)]


def test_all_and_globs_select_only_svms_with_an_external_key_manager() -> None:
    """`all` skips onboard key managers instead of blocking them; exclusions apply."""
    state = ClusterState(
        version=RECENT,
        key_managers=(km("app_1"), km("app_2", external=False), km("app_test"), km("db")),
    )
    got = plan_cluster(cluster(select("app_*"), exclude=("*_test",)), state)
    assert [d.svm for d in got] == ["app_1"]
    everything = plan_cluster(cluster(select("*", kind=SelectorKind.ALL)), state)
    assert [d.svm for d in everything] == ["app_1", "app_test", "db"]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (ClusterState(version=RECENT, key_managers=(), svms=frozenset({"x"})), "svm_not_found"),
        (
            ClusterState(version=RECENT, key_managers=(), svms=frozenset({"fin"})),
            "no_external_key_manager",
        ),
        (
            ClusterState(version=RECENT, key_managers=(km("fin", external=False),)),
            "no_external_key_manager",
        ),
        (
            ClusterState(
                version=RECENT, key_managers=(km("fin", "a:5696", "b:5696", "c:5696", "d:5696"),)
            ),
            "too_many_servers",
        ),
    ],
)
def test_explicit_svm_that_cannot_take_the_server_is_blocked(
    state: ClusterState, reason: str
) -> None:
    """An SVM named explicitly is blocked, with a reason, when the server cannot be added."""
    (decision,) = plan_cluster(cluster(select("fin")), state)
    assert (decision.action, decision.reason) == (Action.BLOCKED, reason)
    assert decision.detail


def test_five_primaries_counting_present_ones_block_every_missing_server() -> None:
    """3 present + 2 missing > 4: both missing are blocked, the present stay present."""
    state = ClusterState(version=RECENT, key_managers=(km("fin", "a:5696", "b:5696", "c:5696"),))
    got = plan_cluster(cluster(select("fin", NEW, NEW2)), state)
    assert {d.action for d in got} == {Action.BLOCKED}
    assert "3 present + 2 missing" in (got[0].detail or "")


def test_secondaries_before_ontap_9_8_are_blocked() -> None:
    """secondary_key_servers arrived in 9.8; asking them of 9.7 blocks, 9.8 adds."""
    selector = select("fin", WITH_SECONDARY)
    old = ClusterState(version=OntapVersion(9, 7, 0), key_managers=(km("fin"),))
    (decision,) = plan_cluster(cluster(selector), old)
    assert (decision.action, decision.reason) == (Action.BLOCKED, "ontap_too_old")
    new = ClusterState(version=OntapVersion(9, 8, 0), key_managers=(km("fin"),))
    assert plan_cluster(cluster(selector), new)[0].action is Action.ADD


def test_cluster_scope_uses_the_cluster_key_manager() -> None:
    """`cluster_scope: true` targets the cluster-scoped key manager (svm None)."""
    state = ClusterState(version=RECENT, key_managers=(km(None), km("a")))
    got = plan_cluster(cluster(cluster_scope=True), state)
    assert actions(got) == [(None, NEW.server, "add", None)]


def test_missing_servers_of_one_key_manager_go_out_together_from_9_8() -> None:
    """Two missing servers make one records[] batch on 9.8+, two single POSTs before."""
    selector = select("fin", NEW, NEW2)
    state = ClusterState(version=RECENT, key_managers=(km("fin"),))
    decisions = plan_cluster(cluster(selector), state)
    assert [len(b.decisions) for b in batches(decisions, RECENT)] == [2]
    assert [len(b.decisions) for b in batches(decisions, OntapVersion(9, 7, 0))] == [1, 1]


def test_versions_compare_numerically() -> None:
    """9.13 is newer than 9.8 (not string order)."""
    assert OntapVersion(9, 13, 0) > OntapVersion(9, 8, 1)
    assert str(OntapVersion(9, 16, 1)) == "9.16.1"


def test_an_addition_and_a_removal_of_one_server_are_two_targets() -> None:
    """The operation is part of a target's identity."""
    add = plan_cluster(cluster(select("svm1")), state(km("svm1")))[0]
    remove = dataclasses.replace(add, operation=Operation.REMOVE)
    assert add.target == ("c1", "svm1", NEW.server, Operation.ADD)
    assert add.target != remove.target


def test_each_key_manager_gets_its_steps_in_order() -> None:
    """One plan per key manager, its batches as steps; before 9.8 one step per server."""
    selected = cluster(select("svm1", NEW, NEW2), select("svm2"))
    live = state(km("svm1"), km("svm2"))
    decisions = plan_cluster(selected, live)
    plans = key_manager_plans(decisions, live)
    assert [(p.svm, len(p.steps)) for p in plans] == [("svm1", 1), ("svm2", 1)]
    old = key_manager_plans(decisions, dataclasses.replace(live, version=OntapVersion(9, 7)))
    assert [[d.server for d in s.decisions] for s in old[0].steps if isinstance(s, Batch)] == [
        [NEW.server],
        [NEW2.server],
    ]


def approved(fingerprint: tuple[str, ...], *servers: str) -> ApprovedPlan:
    """A saved plan adding ``servers`` to svm1's key manager, made when it had ``fingerprint``."""
    add = ApprovedKeyManager(svm="svm1", fingerprint=fingerprint, add=servers)
    return ApprovedPlan(plan_id="p1", clusters={"c1": {"km-svm1": add}})


def test_an_approved_plan_keeps_only_its_additions() -> None:
    """Additions the plan approved go ahead; others, and other key managers, are left out."""
    live = state(km("svm1", "old.example.com:5696"), km("svm2"))
    decisions = plan_cluster(cluster(select("svm1", NEW, NEW2), select("svm2")), live)
    plan = approved(("old.example.com:5696",), NEW.server)
    kept, drifted = approved_only("c1", decisions, live, plan)
    assert [(d.svm, d.server) for d in kept] == [("svm1", NEW.server)]
    assert drifted == ()


@pytest.mark.parametrize(
    "live",
    [
        (km("svm1", "old.example.com:5696", "other.example.com:5696"),),  # a server came
        (km("svm1"),),  # the old one went
        (),  # the key manager went
    ],
    ids=["server-added", "server-removed", "key-manager-gone"],
)
def test_a_key_manager_that_drifted_is_not_touched(live: tuple[LiveKeyManager, ...]) -> None:
    """Servers other than the plan's fingerprint: every approved addition is drifted."""
    now = state(*live)
    decisions = plan_cluster(cluster(select("svm1", NEW)), now)
    kept, drifted = approved_only(
        "c1", decisions, now, approved(("old.example.com:5696",), NEW.server)
    )
    assert kept == ()
    assert [(d.svm, d.server, d.key_manager_uuid) for d in drifted] == [
        ("svm1", NEW.server, "km-svm1")
    ]


OLD = "old.example.com:5696"


@pytest.mark.parametrize(
    ("servers_now", "kept", "drifted"),
    [
        # NEW added (by a run of this plan killed before its line): NEW2 still goes out.
        ((OLD, NEW.server), [(NEW.server, "present"), (NEW2.server, "add")], []),
        # Both added: nothing left to send.
        ((OLD, NEW.server, NEW2.server), [(NEW.server, "present"), (NEW2.server, "present")], []),
        # A server the plan does not add came: the key manager drifted.
        ((OLD, NEW.server, "x.example.com:5696"), [], [NEW.server, NEW2.server]),
        # The old server went, and the plan does not remove it: drifted.
        ((NEW.server,), [], [NEW.server, NEW2.server]),
    ],
    ids=["half-done", "all-done", "another-came", "old-went"],
)
def test_approved_changes_already_made_are_not_drift(
    servers_now: tuple[str, ...], kept: list[tuple[str, str]], drifted: list[str]
) -> None:
    """Servers on the plan's way (its fingerprint, some approved changes made) are still the
    plan's: what is done is kept as done, the rest goes out; anything else drifted."""
    now = state(km("svm1", *servers_now))
    decisions = plan_cluster(cluster(select("svm1", NEW, NEW2)), now)
    plan = approved((OLD,), NEW.server, NEW2.server)
    got_kept, got_drifted = approved_only("c1", decisions, now, plan)
    assert [(d.server, d.action.value) for d in got_kept] == kept
    assert [d.server for d in got_drifted] == drifted


def primaries_along(plan: KeyManagerPlan, present: tuple[str, ...]) -> list[int]:
    """The key manager's primary count after each step."""
    servers = set(present)
    counts = []
    for step in plan.steps:
        if isinstance(step, Batch):
            servers |= {d.server for d in step.decisions}
        elif isinstance(step, Remove):
            servers.discard(step.decision.server)
        counts.append(len(servers))
    return counts


def migration(
    present: tuple[str, ...], add: tuple[str, ...], retire: tuple[str, ...]
) -> KeyManagerPlan:
    """The migration plan of one key manager holding ``present``."""
    live = LiveKeyManager(uuid="km-1", svm="svm1", external=True, servers=present)

    def decision(server: str, action: Action) -> Decision:
        operation = Operation.REMOVE if action is Action.REMOVE else Operation.ADD
        return Decision(
            cluster="c1",
            svm="svm1",
            key_manager_uuid="km-1",
            desired=DesiredServer(server=server),
            action=action,
            operation=operation,
        )

    decisions = [decision(s, Action.ADD) for s in add] + [
        decision(s, Action.REMOVE) for s in retire
    ]
    plans = key_manager_plans(
        decisions, ClusterState(version=RECENT, key_managers=(live,)), migrate=True
    )
    return (
        plans[0]
        if plans
        else KeyManagerPlan(cluster="c1", svm="svm1", key_manager_uuid="km-1", steps=())
    )


def kinds(plan: KeyManagerPlan) -> list[str]:
    """The steps as short words: add(n), verify(n), remove(server)."""
    out = []
    for step in plan.steps:
        if isinstance(step, Batch):
            out.append(f"add {','.join(d.server for d in step.decisions)}")
        elif isinstance(step, Verify):
            out.append(f"verify {','.join(step.servers)}")
        else:
            out.append(f"remove {step.decision.server}")
    return out


def test_a_migration_adds_then_verifies_then_removes_one_at_a_time() -> None:
    """Room for the new servers: add them together, verify, then each old one goes."""
    plan = migration(("o1", "o2"), add=("n1", "n2"), retire=("o1", "o2"))
    assert kinds(plan) == ["add n1,n2", "verify n1,n2", "remove o1", "remove o2"]


def test_four_primaries_interleave_and_never_leave_the_limits() -> None:
    """4 old -> 2 new: remove one, add one, verify, ...; never 0 nor more than 4 primaries."""
    present = ("o1", "o2", "o3", "o4")
    plan = migration(present, add=("n1", "n2"), retire=present)
    assert kinds(plan) == [
        "remove o1",
        "add n1",
        "verify n1",
        "remove o2",
        "add n2",
        "verify n1,n2",
        "remove o3",
        "remove o4",
    ]
    assert all(1 <= n <= 4 for n in primaries_along(plan, present))


def test_no_removal_before_every_addition_so_far_is_verified() -> None:
    """Each Remove step comes after a Verify naming every server added before it."""
    present = ("o1", "o2", "o3")
    plan = migration(present, add=("n1", "n2", "n3"), retire=present)
    added: set[str] = set()
    verified: set[str] = set()
    for step in plan.steps:
        if isinstance(step, Batch):
            added |= {d.server for d in step.decisions}
        elif isinstance(step, Verify):
            verified = set(step.servers)
        else:
            assert added <= verified, kinds(plan)
    assert all(1 <= n <= 4 for n in primaries_along(plan, present))


def test_a_migration_that_only_adds_still_verifies() -> None:
    """Nothing to retire: add and verify (the verify line says the new servers work)."""
    plan = migration(("o1",), add=("n1",), retire=())
    assert kinds(plan) == ["add n1", "verify n1,o1"]


@given(
    st.integers(0, 4).flatmap(
        lambda n: st.tuples(
            st.just(tuple(f"o{i}" for i in range(n))),
            st.integers(0, 4).map(lambda k: tuple(f"n{i}" for i in range(k))),
            st.sets(st.sampled_from([f"o{i}" for i in range(n)] or ["o0"])),
        )
    )
)
def test_any_migration_keeps_the_key_manager_within_its_limits(
    case: tuple[tuple[str, ...], tuple[str, ...], set[str]],
) -> None:
    """For any present/add/retire mix that ends within 4 primaries: 1..4 at every step, all done."""
    present, add, retire_set = case
    retire = tuple(sorted(s for s in retire_set if s in present))
    end = len(present) + len(add) - len(retire)
    if not 1 <= end <= 4:
        return  # the plan blocks these before any step
    plan = migration(present, add=add, retire=retire)
    assert all(1 <= n <= 4 for n in primaries_along(plan, present))
    removed = {s.decision.server for s in plan.steps if isinstance(s, Remove)}
    assert removed == set(retire)


def retiring(*retired: str) -> Cluster:
    """A cluster selecting svm1, adding NEW and retiring ``retired`` there."""
    selector = dataclasses.replace(select("svm1"), retire_servers=retired)
    return cluster(selector)


def test_retired_servers_are_targets_only_when_retiring() -> None:
    """migrate and check see the retired servers; apply does not."""
    live = state(km("svm1", "old1:5696"))
    chosen = retiring("old1:5696", "old2:5696")
    assert actions(plan_cluster(chosen, live)) == [("svm1", NEW.server, "add", None)]
    decisions = plan_cluster(chosen, live, retire=True)
    assert actions(decisions) == [
        ("svm1", NEW.server, "add", None),
        ("svm1", "old1:5696", "remove", None),
        ("svm1", "old2:5696", "absent", None),
    ]
    assert [d.operation for d in decisions] == [Operation.ADD, Operation.REMOVE, Operation.REMOVE]


def test_retiring_makes_room_that_apply_would_not_have() -> None:
    """4 primaries, one new, one retired: a migration fits where an apply is blocked."""
    live = state(km("svm1", "o1:5696", "o2:5696", "o3:5696", "o4:5696"))
    chosen = retiring("o1:5696")
    assert actions(plan_cluster(chosen, live))[0][2:] == ("blocked", "too_many_servers")
    assert actions(plan_cluster(chosen, live, retire=True))[0][2] == "add"


def test_no_removal_where_the_replacement_cannot_be_added() -> None:
    """The new server is blocked: the old one is kept (blocked with the same reason)."""
    live = dataclasses.replace(state(km("svm1", "old1:5696")), version=OntapVersion(9, 7))
    selector = dataclasses.replace(select("svm1", WITH_SECONDARY), retire_servers=("old1:5696",))
    decisions = plan_cluster(cluster(selector), live, retire=True)
    assert [(d.action.value, d.reason) for d in decisions] == [
        ("blocked", "ontap_too_old"),
        ("blocked", "ontap_too_old"),
    ]


def test_servers_already_there_are_verified_before_the_first_removal() -> None:
    """A resumed migration (the new servers added by the run before): verify, then remove."""
    plan = migration(("o1", "o2", "n1", "n2"), add=(), retire=("o1", "o2"))
    assert kinds(plan) == ["verify n1,n2", "remove o1", "remove o2"]


def test_a_half_done_interleaving_verifies_what_it_kept_before_removing() -> None:
    """4 primaries, one new server added by a killed run: it is verified before o2 goes."""
    present = ("o2", "o3", "o4", "n1")
    plan = migration(present, add=("n2",), retire=("o2", "o3", "o4"))
    assert kinds(plan)[:2] == ["verify n1", "remove o2"]
    assert all(1 <= n <= 4 for n in primaries_along(plan, present))
