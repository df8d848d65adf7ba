"""When a cluster stops taking requests: the ``Stopped`` signal and the circuit breaker.

A cluster is *broken* once it refuses our credentials (any 401 or 403) or after
``threshold`` transport failures in a row (an answer of any kind resets the count): its
remaining targets end at once, ``failed`` (``auth_failed``) or ``skipped``
(``cluster_unreachable``), rather than each spending its retries on it.
"""

from __future__ import annotations

import structlog

from bulkkm.errors import AuthError, OntapError, TransportError
from bulkkm.events import ErrorInfo, Outcome

__all__ = ["Breaker", "Stopped"]

log = structlog.get_logger("bulkkm.engine")


class Stopped(Exception):
    """Raised inside a unit of work when its cluster is broken or no request may start."""

    def __init__(self, outcome: Outcome, reason: str, error: ErrorInfo | None) -> None:
        """How the targets that meet the stop end."""
        super().__init__(reason)
        self.outcome, self.reason, self.error = outcome, reason, error


class Breaker:
    """One cluster's circuit breaker, fed every failure its units of work meet."""

    __slots__ = ("broken", "failures", "threshold")

    def __init__(self, threshold: int) -> None:
        """Closed; ``threshold`` transport failures in a row open it."""
        self.threshold = threshold
        self.failures = 0
        """Transport failures in a row."""
        self.broken: Stopped | None = None
        """How the cluster's remaining targets end, once it is broken."""

    def record(self, exc: Exception) -> None:
        """Count one failure against the cluster."""
        if isinstance(exc, AuthError):
            self.broken = Stopped(Outcome.FAILED, "auth_failed", ErrorInfo.from_exception(exc))
        elif isinstance(exc, TransportError):
            self.failures += 1
            if self.failures >= self.threshold and self.broken is None:
                self.broken = Stopped(
                    Outcome.SKIPPED, "cluster_unreachable", ErrorInfo.from_exception(exc)
                )
                log.warning("cluster_unreachable", failures=self.failures)
        elif isinstance(exc, OntapError):
            self.failures = 0  # the cluster answered
