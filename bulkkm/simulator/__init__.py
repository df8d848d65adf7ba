"""A simulated ONTAP fleet: clusters that answer bulkkm's REST calls over HTTPS on loopback.

Used by tests, benchmarks, ``bulkkm simulate`` and ``bulkkm demo``; never by the engine.
"""

from bulkkm.simulator._cli import main
from bulkkm.simulator._fleet import SimulatedFleet
from bulkkm.simulator._journal import RequestRecord, VerifyKind, VerifyRecord, WriteRecord
from bulkkm.simulator._model import (
    Mode,
    NodeState,
    Scope,
    SimCluster,
    SimKey,
    SimKeyManager,
    SimNode,
    SimSvm,
)
from bulkkm.simulator._spec import ROUTE_KINDS, Faults, FleetSpec, RouteLatency, write_latency

__all__ = [
    "ROUTE_KINDS",
    "Faults",
    "FleetSpec",
    "Mode",
    "NodeState",
    "RequestRecord",
    "RouteLatency",
    "Scope",
    "SimCluster",
    "SimKey",
    "SimKeyManager",
    "SimNode",
    "SimSvm",
    "SimulatedFleet",
    "VerifyKind",
    "VerifyRecord",
    "WriteRecord",
    "main",
    "write_latency",
]
