"""What a ``--resume`` run takes from the reports before it, and when it may carry a line.

Pure: the chain of reports is read by ``bulkkm.report.load_resume``; here are the values and
the one decision. The cluster is the truth, the old report only a witness: a target is
carried over (its old ``added`` or ``present`` line kept, marked ``carried_over``) only when
discovery finds that server on that same key manager now. Anything else is planned again
from the live state, so a resume against a fleet that lost its servers, or with the report
of another fleet, re-adds what is missing instead of trusting old lines.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

from bulkkm.events import Outcome, TargetKey, TargetResult
from bulkkm.plan import Action, Decision, Operation

__all__ = ["DONE", "REMOVED", "Resume"]

DONE: Final = frozenset({Outcome.ADDED, Outcome.PRESENT})
"""Outcomes of an addition a ``--resume`` run does not attempt again (once confirmed)."""
REMOVED: Final = frozenset({Outcome.REMOVED, Outcome.ABSENT})
"""Outcomes of a removal a ``--resume`` run does not attempt again (once confirmed)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Resume:
    """The report a run resumes from: its identity and the last outcome of every target."""

    run_id: str
    report: str
    """The report's path, as given."""
    inventory_sha256: str
    targets: Mapping[TargetKey, TargetResult]
    """Each target's latest line along the chain of reports (newest wins)."""

    def carried(self, decision: Decision) -> TargetResult | None:
        """The old line to keep for a target, if the cluster confirms it; else None.

        An addition is confirmed when the server is there now, a removal when it is gone.
        """
        done = Action.ABSENT if decision.operation is Operation.REMOVE else Action.PRESENT
        return self.confirmed(
            (decision.cluster, decision.svm, decision.server),
            decision.key_manager_uuid,
            decision.operation,
            done_now=decision.action is done,
        )

    def confirmed(
        self, key: TargetKey, key_manager_uuid: str | None, operation: Operation, *, done_now: bool
    ) -> TargetResult | None:
        """The old line of ``key``, if it did ``operation`` on that same key manager and the
        cluster shows it done now (``done_now``: the server there, or gone); else None."""
        old = self.targets.get(key)
        if old is None or old.key_manager_uuid != key_manager_uuid or not done_now:
            return None
        if operation is Operation.REMOVE:
            confirmed = old.action is Operation.REMOVE and old.outcome in REMOVED
        else:
            confirmed = old.action is not Operation.REMOVE and old.outcome in DONE
        return old if confirmed else None

    def of_cluster(self, cluster: str) -> tuple[TargetResult, ...]:
        """Every target line the chain holds for one cluster (for clusters this run skips)."""
        return tuple(t for key, t in self.targets.items() if key[0] == cluster)
