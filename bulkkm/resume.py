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
from bulkkm.plan import Action, Decision

__all__ = ["DONE", "Resume"]

DONE: Final = frozenset({Outcome.ADDED, Outcome.PRESENT})
"""Outcomes a ``--resume`` run does not attempt again (once the cluster confirms them)."""


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
        """The old line to keep for a target, if the cluster confirms it; else None."""
        old = self.targets.get((decision.cluster, decision.svm, decision.server))
        if (
            old is None
            or old.outcome not in DONE
            or decision.action is not Action.PRESENT
            or old.key_manager_uuid != decision.key_manager_uuid
        ):
            return None
        return old

    def of_cluster(self, cluster: str) -> tuple[TargetResult, ...]:
        """Every target line the chain holds for one cluster (for clusters this run skips)."""
        return tuple(t for key, t in self.targets.items() if key[0] == cluster)
