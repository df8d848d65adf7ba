"""``plan --show-steps``: each key manager's ordered steps, as a change board reads them.

A subscriber that keeps what discovery found per cluster and, at the end, lays out each key
manager's plan from ``bulkkm.plan.key_manager_plans``: additions, the verification between,
then the removals one at a time (``migrate``), exactly the order the engine follows.
"""

from __future__ import annotations

from bulkkm.events import ClusterDiscovered, Event
from bulkkm.plan import Batch, Operation, Remove, Verify, key_manager_plans, removal_blocker
from bulkkm.state import ClusterState, OntapVersion

__all__ = ["StepsView"]


class StepsView:
    """Collects discovered clusters; ``lines()`` gives their key managers' steps."""

    def __init__(self) -> None:
        """Nothing discovered yet."""
        self._clusters: list[ClusterDiscovered] = []

    def __call__(self, event: Event) -> None:
        """Keep each discovered cluster."""
        if isinstance(event, ClusterDiscovered):
            self._clusters.append(event)

    def lines(self) -> list[str]:
        """One block per key manager with something to do, in discovery order."""
        out: list[str] = []
        for cluster in self._clusters:
            state = ClusterState(
                version=_version(cluster.version), key_managers=cluster.key_managers
            )
            migrate = any(d.operation is Operation.REMOVE for d in cluster.decisions)
            # A cluster too old to verify keeps its retired servers: no verification is run.
            verifies = removal_blocker(state.version, verify_keys=False) is None
            for plan in key_manager_plans(cluster.decisions, state, migrate=migrate):
                where = f"svm {plan.svm}" if plan.svm is not None else "cluster scope"
                out.append(f"{cluster.cluster} {where} (key manager {plan.key_manager_uuid}):")
                steps = [s for s in plan.steps if verifies or not isinstance(s, Verify)]
                for number, step in enumerate(steps, 1):
                    if isinstance(step, Batch):
                        what = "would_add " + ", ".join(d.server for d in step.decisions)
                    elif isinstance(step, Remove):
                        what = f"would_remove {step.decision.server}"
                    else:
                        what = "verify " + ", ".join(step.servers) + " reachable from every node"
                    out.append(f"  {number}. {what}")
        return out


def _version(text: str) -> OntapVersion:
    """``9.13.1`` as a version (0.0 where a server gave something else)."""
    parts = [int(p) if p.isdigit() else 0 for p in [*text.split("."), "0", "0", "0"][:3]]
    return OntapVersion(*parts)
