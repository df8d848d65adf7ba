"""The promises every run keeps, checked against the simulator's own records.

``check_invariants`` takes what a user could inspect after a run — the inventory, the
fleet's state before and after, the simulator's write log and the report — and asserts:
every target has exactly one ``target`` line; ``added`` targets are in the final state and
were written exactly once; ``present`` ones are in the final state; ``blocked`` and
``skipped`` ones caused no write; no server was ever applied twice to one key manager; no
write touched a key manager or server the inventory did not ask for; the summary counts
equal the lines.

``check_report`` checks what a report promises on its own (every line well formed, each
outcome with its error or reason, the exit code the contract's table gives), and
``check_no_blind_repost`` that a server, once applied, was never POSTed again: an ambiguous
write is read back before anything is re-sent.

For migrations, ``check_invariants`` also asserts that ``removed`` and ``absent`` servers
are gone after the run, that every DELETE was of a removal target and none applied twice;
``check_migration`` replays the run's writes over the state before it: no DELETE on a key
manager before every new server it had then passed a connectivity read in that run, and
never 0 or more than 4 primaries on a key manager.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bulkkm.inventory import Inventory, SelectorKind
from bulkkm.simulator import VerifyKind, VerifyRecord, WriteRecord

Line = dict[str, Any]
"""A parsed report line or state record (JSON)."""
KmKey = tuple[str, str | None]
"""(cluster, svm or None for the cluster scope)."""


def key_managers(state: Mapping[str, Any]) -> dict[KmKey, Line]:
    """Every key manager of a fleet state, by cluster and SVM."""
    out: dict[KmKey, Line] = {}
    for cluster in state["clusters"]:
        for km in cluster["key_managers"]:
            out[(cluster["name"], km["svm"])] = km
    return out


def servers_of(km: Mapping[str, Any] | None) -> set[str]:
    """The primary servers of a key manager record (or none)."""
    if km is None:
        return set()
    return {s["server"] for s in km["servers"]}


def expected_targets(
    inventory: Inventory, before: Mapping[str, Any], undiscovered: set[str]
) -> set[tuple[str, str | None, str]]:
    """The targets an inventory selects on a fleet, from the state before the run."""
    kms = key_managers(before)
    svm_names = {c["name"]: {s["name"] for s in c["svms"]} for c in before["clusters"]}
    targets: set[tuple[str, str | None, str]] = set()
    for cluster in inventory.clusters:
        if cluster.name in undiscovered:
            continue
        if cluster.cluster_scope:
            targets |= {(cluster.name, None, d.server) for d in cluster.key_servers}
        names = svm_names[cluster.name] | {
            s.pattern for s in cluster.svms if s.kind is SelectorKind.NAME
        }
        for svm in names:
            selector = cluster.selector_for(svm)
            km = kms.get((cluster.name, svm))
            external = km is not None and km["mode"] == "external"
            if selector is None or (selector.kind is not SelectorKind.NAME and not external):
                continue
            targets |= {(cluster.name, svm, d.server) for d in selector.key_servers}
    return targets


def check_invariants(
    *,
    inventory: Inventory,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    writes: Sequence[WriteRecord],
    report: Sequence[Mapping[str, Any]],
    expected: set[tuple[str, str | None, str]] | None = None,
) -> None:
    """Assert every promise of a run over the report and the fleet's records.

    ``expected``: the run's targets when not every target of the inventory is one (a saved
    plan's additions); by default, every target the inventory selects.
    """
    targets = [line for line in report if line["type"] == "target"]
    clusters = {str(line["cluster"]) for line in report if line["type"] == "cluster"}
    keys = Counter((str(t["cluster"]), t["svm"], str(t["server"])) for t in targets)
    twice = [k for k, n in keys.items() if n > 1]
    assert not twice, f"targets with more than one line: {twice[:5]}"
    if expected is None:
        expected = expected_targets(inventory, before, clusters)
    missing = expected - set(keys)
    assert not missing, f"targets without a line: {sorted(missing, key=str)[:5]}"

    kms_after = key_managers(after)
    applied = Counter(
        (w.cluster, w.key_manager_uuid, w.server)
        for w in writes
        if w.applied and w.method == "POST"
    )
    doubled = [k for k, n in applied.items() if n > 1]
    assert not doubled, f"servers applied twice: {doubled[:5]}"
    removed = Counter(
        (w.cluster, w.key_manager_uuid, w.server)
        for w in writes
        if w.applied and w.method == "DELETE"
    )
    doubled = [k for k, n in removed.items() if n > 1]
    assert not doubled, f"servers removed twice: {doubled[:5]}"
    adds = {
        (str(t["cluster"]), t["key_manager_uuid"], str(t["server"]))
        for t in targets
        if t.get("action") != "remove"
    }
    removals = {
        (str(t["cluster"]), t["key_manager_uuid"], str(t["server"]))
        for t in targets
        if t.get("action") == "remove"
    }
    stray = [
        w
        for w in writes
        if (w.cluster, w.key_manager_uuid, w.server)
        not in (removals if w.method == "DELETE" else adds)
    ]
    assert not stray, f"writes outside the run's targets: {stray[:5]}"

    for t in targets:
        key = (str(t["cluster"]), t["svm"])
        written = applied[(str(t["cluster"]), t["key_manager_uuid"], str(t["server"]))]
        where = f"{t['cluster']}/{t['svm']}/{t['server']}"
        outcome = t["outcome"]
        if outcome == "added":
            assert t["server"] in servers_of(kms_after.get(key)), f"added but absent: {where}"
            assert written == 1 or t.get("carried_over"), (
                f"added but written {written} times: {where}"
            )
        elif outcome == "present":
            assert t["server"] in servers_of(kms_after.get(key)), f"present but absent: {where}"
        elif outcome in ("removed", "absent"):
            assert t["server"] not in servers_of(kms_after.get(key)), (
                f"{outcome} but there: {where}"
            )
        if outcome in ("blocked", "skipped", "would_add", "would_remove", "absent"):
            deleted = removed[(str(t["cluster"]), t["key_manager_uuid"], str(t["server"]))]
            assert written == 0, f"{outcome} but written: {where}"
            assert deleted == 0 or t.get("carried_over"), f"{outcome} but removed: {where}"

    summaries = [line for line in report if line["type"] == "summary"]
    if summaries:
        (summary,) = summaries
        assert summary["counts"] == dict(Counter(str(t["outcome"]) for t in targets)), (
            "summary counts differ from the lines"
        )
        assert summary["clusters_failed"] == sum(
            1 for line in report if line["type"] == "cluster" and line["outcome"] == "failed"
        )


OUTCOMES = frozenset(
    {
        "added",
        "present",
        "would_add",
        "blocked",
        "failed",
        "skipped",
        "cancelled",
        "removed",
        "absent",
        "would_remove",
    }
)
CATEGORIES = frozenset(
    {"transient", "permanent", "precondition", "auth", "tls", "transport", "timeout"}
)


def contract_exit_code(report: Sequence[Mapping[str, Any]]) -> int:
    """The exit code the contract's table gives a finished report (written independently)."""
    run = report[0]
    summary = report[-1]
    if summary.get("stop_reason") == "interrupted":
        return 130
    if summary.get("stop_reason") is not None:
        return 3
    counts = outcomes(report)
    failed_clusters = [
        line for line in report if line["type"] == "cluster" and line["outcome"] == "failed"
    ]
    if failed_clusters or any(counts[o] for o in ("failed", "blocked", "skipped", "cancelled")):
        return 1
    if run["command"] == "check" and (counts["would_add"] or counts["would_remove"]):
        return 4
    return 0


def check_report(report: Sequence[Mapping[str, Any]], *, finished: bool = True) -> None:
    """Assert the report's own promises: its shape, every outcome's error or reason, exit code."""
    assert report, "empty report"
    assert report[0]["type"] == "run", "the first line is not the run line"
    kinds = Counter(str(line["type"]) for line in report)
    assert kinds["run"] == 1, "more than one run line"
    assert kinds["summary"] == (1 if finished else 0), f"{kinds['summary']} summary lines"
    run_id = report[0]["run_id"]
    for line in report[1:]:
        if line["type"] not in ("target", "cluster"):
            continue
        where = f"{line['cluster']}/{line.get('svm')}/{line.get('server')}"
        assert line["run_id"] == run_id, f"line of another run: {where}"
        outcome = line["outcome"]
        error = line["error"]
        assert outcome in OUTCOMES, f"unknown outcome {outcome!r}: {where}"
        if error is not None:
            assert error["category"] in CATEGORIES, f"unknown category: {where} {error}"
            assert isinstance(error["message"], str), f"error without message: {where}"
        if outcome in ("added", "present", "would_add", "removed", "absent", "would_remove"):
            assert error is None, f"{outcome} with an error: {where}"
        elif outcome == "failed":
            assert error is not None, f"failed without an error: {where}"
        elif outcome == "blocked":
            assert error is not None, f"blocked without an error: {where}"
            assert error["category"] == "precondition", f"blocked, not a precondition: {where}"
        else:
            assert line.get("reason"), f"{outcome} without a reason: {where}"
    if finished:
        summary = report[-1]
        assert summary["type"] == "summary", "the summary is not the last line"
        assert summary["run_id"] == run_id
        assert report[0]["targets"] == kinds["target"], "the run line's target count is wrong"
        assert summary["exit_code"] == contract_exit_code(report), (
            f"exit code {summary['exit_code']}, the contract says {contract_exit_code(report)}"
        )


def check_no_blind_repost(writes: Sequence[WriteRecord]) -> None:
    """Assert no server was POSTed again once a POST had applied it (the read-back came first).

    Holds wherever ONTAP applies a POST before its answer goes wrong: lost, a 5xx, an odd
    success answer (a 201 that is not JSON, a 204, a 202 without a job link), a job whose
    polls fail. Not after the client gave up on a slow answer: that one cannot be told from
    a POST that never arrived.
    """
    applied: set[tuple[str, str, str]] = set()
    for w in writes:
        if w.method != "POST" or not w.server:
            continue
        key = (w.cluster, w.key_manager_uuid, w.server)
        assert key not in applied, f"POSTed again after it was applied: {key} ({w.code})"
        if w.applied:
            applied.add(key)


def outcomes(report: Iterable[Mapping[str, Any]]) -> Counter[str]:
    """Target lines counted by outcome."""
    return Counter(str(line["outcome"]) for line in report if line["type"] == "target")


def check_migration(
    *,
    before: Mapping[str, Any],
    writes: Sequence[WriteRecord],
    checks: Sequence[VerifyRecord],
    report: Sequence[Mapping[str, Any]],
    new_servers: Iterable[str] = (),
) -> None:
    """Assert a migration run's order from the simulator's own records, replayed in time.

    ``writes`` and ``checks``: what the fleet logged during this run only. Before each
    DELETE sent to a key manager, every server it then had that the run was to add (a new
    server, added by this run or an earlier one) had a connectivity read in this run that
    found it available on every node, after its own POST. After each write, the key
    manager has 1 to 4 primaries. ``new_servers``: servers new on every key manager (for a
    run killed before its report named them all).
    """
    new = set(new_servers)
    desired: dict[str, set[str]] = {km["uuid"]: set(new) for km in key_managers(before).values()}
    for t in report:
        if t["type"] == "target" and t.get("action") == "add" and t["key_manager_uuid"]:
            desired.setdefault(str(t["key_manager_uuid"]), set()).add(str(t["server"]))
    config: dict[str, set[str]] = {
        km["uuid"]: servers_of(km) for km in key_managers(before).values()
    }
    verified: set[tuple[str, str]] = set()
    """(key manager, server) read available on every node since its POST, in this run."""
    journal: Iterable[WriteRecord | VerifyRecord] = heapq.merge(
        writes, checks, key=lambda record: record.at
    )
    for record in journal:
        km = record.key_manager_uuid
        if isinstance(record, VerifyRecord):
            if record.kind is VerifyKind.CONNECTIVITY and record.passed:
                verified.add((km, record.server))
            continue
        servers = config.setdefault(km, set())
        if record.method == "DELETE":
            unverified = sorted(
                s for s in servers & desired.get(km, set()) if (km, s) not in verified
            )
            assert not unverified, (
                f"DELETE {record.server} on {record.cluster}/{km} before {unverified} "
                "passed a verification in this run"
            )
        if not record.applied:
            continue
        if record.method == "POST":
            servers.add(record.server)
            verified.discard((km, record.server))
        elif record.method == "DELETE":
            servers.discard(record.server)
        assert 1 <= len(servers) <= 4, (
            f"{record.cluster}/{km} had {len(servers)} primaries after {record.method} "
            f"{record.server}"
        )
