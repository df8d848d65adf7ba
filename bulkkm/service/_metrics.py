"""Prometheus metrics: runs by state, targets by outcome, durations per cluster group, retries.

prometheus-client writes the text format (escaping, histogram buckets, ``_created`` series)
and keeps its values thread-safe; each service has a registry of its own, so two services in
one process (the tests) never share counters. Run states are read from the database at each
scrape (they survive a restart); the rest counts events of the runs since the service
started, through a sync subscriber per engine run (a counter increment per event: it cannot
slow a run).

The engine reports no per-request timing to its subscribers (that would need a hook in
``ontap``), so the latency histogram per cluster group is the time each target took, first
request to settled outcome, retries included: what a slow or throttling group shows first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bulkkm.events import ClusterResult, Event, Outcome, Retrying, Subscriber, TargetResult
from bulkkm.service._model import RunState

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
NO_GROUP: Final = "none"
_SECONDS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """One service's metrics."""

    def __init__(self) -> None:
        """A registry of its own, every metric declared."""
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.runs = Gauge("bulkkm_runs", "Runs by state.", ["state"], registry=registry)
        self.targets = Counter(
            "bulkkm_targets",
            "Targets settled by the service's runs, by command and outcome.",
            ["command", "outcome"],
            registry=registry,
        )
        self.clusters_failed = Counter(
            "bulkkm_clusters_failed",
            "Clusters a run could not discover (unreachable, credentials, TLS).",
            ["command"],
            registry=registry,
        )
        self.target_seconds = Histogram(
            "bulkkm_target_duration_seconds",
            "Seconds from a target's first request to its outcome (retries included), "
            "per cluster group (a cluster's first group).",
            ["group"],
            buckets=_SECONDS,
            registry=registry,
        )
        self.retries = Counter(
            "bulkkm_retries",
            "Retries of ONTAP requests, by ONTAP error code (else HTTP status, else category).",
            ["code"],
            registry=registry,
        )
        self.api_seconds = Histogram(
            "bulkkm_api_request_duration_seconds",
            "Seconds the service took to answer an API request (until an event stream opens).",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=registry,
        )
        self.fires = Counter(
            "bulkkm_schedule_fires",
            "Schedule fires handled, on time or missed (the service was down).",
            ["missed"],
            registry=registry,
        )

    def subscriber(self, command: str, groups: Mapping[str, str]) -> Subscriber:
        """A sync subscriber counting one engine run's events (``groups``: cluster -> group)."""
        targets, seconds, retries = self.targets, self.target_seconds, self.retries
        failed = self.clusters_failed.labels(command)

        def count(event: Event) -> None:
            """Count one event."""
            match event:
                case TargetResult():
                    targets.labels(command, event.outcome.value).inc()
                    if not event.carried_over:
                        took = (event.finished_at - event.started_at).total_seconds()
                        seconds.labels(groups.get(event.cluster, NO_GROUP)).observe(took)
                case ClusterResult(outcome=Outcome.FAILED):
                    failed.inc()
                case Retrying():
                    error = event.error
                    code = error.code or (str(error.http_status) if error.http_status else None)
                    retries.labels(code or error.category.value).inc()
                case _:
                    pass

        return count

    def render(self, runs_by_state: Mapping[str, int]) -> bytes:
        """The text format, run states as the database has them now."""
        for state in RunState:
            self.runs.labels(state.value).set(runs_by_state.get(state.value, 0))
        return generate_latest(self.registry)
