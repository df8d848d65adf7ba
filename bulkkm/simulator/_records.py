"""The model rendered as ONTAP's JSON records, and the schemas of those records."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Final

from bulkkm.simulator._model import (
    Mode,
    NodeState,
    SimCluster,
    SimKey,
    SimKeyManager,
    SimNode,
    SimSvm,
    server_state,
)
from bulkkm.simulator._query import JsonObj, Schema

__all__ = [
    "CLUSTER",
    "JOB",
    "KEY_ID",
    "KEY_MANAGER",
    "KEY_SERVER",
    "SVM",
    "SimJob",
    "cluster_record",
    "connectivity",
    "job_record",
    "key_id_record",
    "key_manager_href",
    "key_manager_record",
    "key_server_href",
    "key_server_records",
    "key_server_schema",
    "svm_record",
]

CLUSTER: Final = Schema.of(
    ("name", "uuid", "version.full", "version.generation", "version.major", "version.minor",
     "location", "contact"),
    keys=(),
)  # fmt: skip
SVM: Final = Schema.of(
    ("name", "uuid", "state", "subtype", "language"), keys=("uuid",), defaults=("name",)
)
KEY_MANAGER: Final = Schema.of(
    ("uuid", "scope", "svm.name", "svm.uuid", "external.servers.server",
     "external.servers.secondary_key_servers", "external.servers.timeout",
     "external.servers.username", "external.client_certificate.name",
     "external.client_certificate.uuid", "external.server_ca_certificates.name",
     "external.server_ca_certificates.uuid", "onboard.enabled", "onboard.key_backup",
     "policy", "is_default_data_at_rest_encryption_disabled", "status.code", "status.message"),
    keys=("uuid",),
    expensive=("status",),
)  # fmt: skip
_KEY_SERVER_FIELDS: Final = ("server", "secondary_key_servers", "timeout", "username")
_NODE_STATE_FIELDS: Final = ("node.name", "node.uuid", "state")
KEY_SERVER: Final = Schema.of(
    (*_KEY_SERVER_FIELDS, "connectivity.cluster_availability",
     *(f"connectivity.node_states.{name}" for name in _NODE_STATE_FIELDS)),
    keys=("server",),
    expensive=("connectivity",),
)  # fmt: skip
"""Key servers on ONTAP 9.13 and later: ``connectivity.node_states`` for every node."""
KEY_SERVER_97: Final = Schema.of(
    (*_KEY_SERVER_FIELDS, "connectivity.cluster_availability",
     *(f"connectivity.records.{name}" for name in _NODE_STATE_FIELDS)),
    keys=("server",),
    expensive=("connectivity",),
)  # fmt: skip
"""Key servers on ONTAP 9.7 to 9.12: ``connectivity.records`` for the nodes not available."""
KEY_SERVER_96: Final = Schema.of(_KEY_SERVER_FIELDS, keys=("server",))
"""Key servers on ONTAP 9.6: no connectivity."""
KEY_ID: Final = Schema.of(
    ("key_id", "key_server", "key_type", "key_tag", "key_store", "key_store_type",
     "key_manager", "key_user", "restored", "encryption_algorithm", "policy", "crn", "scope",
     "node.name", "node.uuid", "security_key_manager.uuid", "svm.name", "svm.uuid"),
    keys=("key_id",),
    defaults=("key_server", "key_type"),
)  # fmt: skip
JOB: Final = Schema.of(
    ("uuid", "description", "state", "message", "code", "error.code", "error.message",
     "error.target", "start_time", "end_time", "svm.name", "svm.uuid"),
    keys=("uuid",),
)  # fmt: skip


@dataclasses.dataclass(slots=True, kw_only=True, eq=False)
class SimJob:
    """A cluster job (job mode): queued, then running, then success or failure."""

    uuid: str
    description: str
    state: str = "queued"
    message: str = ""
    code: int = 0
    error: JsonObj | None = None


def _links(href: str) -> JsonObj:
    """A HAL ``_links`` with only ``self``."""
    return {"self": {"href": href}}


def cluster_record(cluster: SimCluster) -> JsonObj:
    """``GET /api/cluster``."""
    generation, major, minor = cluster.version_tuple
    return {
        "name": cluster.name,
        "uuid": cluster.uuid,
        "version": {
            "full": f"NetApp Release {cluster.version}: simulated by bulkkm",
            "generation": generation,
            "major": major,
            "minor": minor,
        },
        "_links": _links("/api/cluster"),
    }


def svm_record(svm: SimSvm) -> JsonObj:
    """One record of ``GET /api/svm/svms``."""
    return {
        "uuid": svm.uuid,
        "name": svm.name,
        "state": "running",
        "subtype": "default",
        "_links": _links(f"/api/svm/svms/{svm.uuid}"),
    }


def key_manager_href(km: SimKeyManager) -> str:
    """The path of a key manager."""
    return f"/api/security/key-managers/{km.uuid}"


def key_server_href(km: SimKeyManager, server: str) -> str:
    """The path of one key server, the server percent-encoded as ONTAP does in ``Location``."""
    return f"{key_manager_href(km)}/key-servers/{urllib.parse.quote(server, safe='')}"


def key_manager_record(cluster: SimCluster, km: SimKeyManager) -> JsonObj:
    """One record of ``GET /api/security/key-managers`` (with the expensive ``status``)."""
    record: JsonObj = {"uuid": km.uuid, "scope": str(km.scope)}
    if km.svm is not None:
        record["svm"] = {"name": km.svm.name, "uuid": km.svm.uuid}
    if km.mode is Mode.EXTERNAL:
        servers: list[JsonObj] = []
        for server, secondaries in km.servers.items():
            entry: JsonObj = {"server": server}
            if secondaries and cluster.at_least(8):
                # ONTAP's quirk: here a comma-separated string, on /key-servers an array.
                entry["secondary_key_servers"] = ",".join(secondaries)
            servers.append(entry)
        external: JsonObj = {"servers": servers}
        if not km.client_certificate_missing:
            external["client_certificate"] = {"name": f"{cluster.name}-kmip-client"}
        record["external"] = external
    else:
        record["onboard"] = {"enabled": True}
    record["status"] = {"code": 65537300, "message": "No action needed at this time."}
    record["_links"] = _links(key_manager_href(km))
    return record


def key_server_schema(cluster: SimCluster) -> Schema:
    """The key-server fields this cluster's ONTAP knows (``connectivity`` changed shape in 9.13)."""
    if cluster.at_least(13):
        return KEY_SERVER
    if cluster.at_least(7):
        return KEY_SERVER_97
    return KEY_SERVER_96


def _node(node: SimNode) -> JsonObj:
    """A node reference."""
    return {"name": node.name, "uuid": node.uuid}


def connectivity(cluster: SimCluster, km: SimKeyManager, server: str, now: float) -> JsonObj:
    """A key server's expensive ``connectivity``, in the shape of the cluster's version.

    9.13 and later: ``cluster_availability`` and ``node_states`` for every node; 9.7 to
    9.12: ``cluster_availability`` and ``records`` for the nodes that are not available
    (as ../shared/ONTAP.md reads the 9.7 reference; NetApp's 2020 client names the field
    ``records`` too).
    """
    states = [(node, server_state(km, server, node, now)) for node in cluster.nodes]
    available = all(state is NodeState.AVAILABLE for _, state in states)
    if cluster.at_least(13):
        node_states = [{"node": _node(node), "state": str(state)} for node, state in states]
        return {"cluster_availability": available, "node_states": node_states}
    down = [
        {"node": _node(node), "state": str(state)}
        for node, state in states
        if state is not NodeState.AVAILABLE
    ]
    return {"cluster_availability": available, "records": down}


def key_server_records(cluster: SimCluster, km: SimKeyManager, now: float) -> list[JsonObj]:
    """The records of ``GET .../key-servers`` (secondaries as an array), connectivity from 9.7."""
    records: list[JsonObj] = []
    for server, secondaries in km.servers.items():
        record: JsonObj = {"server": server}
        if secondaries and cluster.at_least(8):
            record["secondary_key_servers"] = list(secondaries)
        if cluster.at_least(7):
            record["connectivity"] = connectivity(cluster, km, server, now)
        record["_links"] = _links(key_server_href(km, server))
        records.append(record)
    return records


def key_id_record(cluster: SimCluster, km: SimKeyManager, node: SimNode, key: SimKey) -> JsonObj:
    """One record of ``GET .../keys/{node.uuid}/key-ids``: a key as that node has it."""
    held = key.held_by(km) or sorted(key.holders)
    server = held[0] if held else ""
    owner = km.svm.name if km.svm is not None else cluster.name
    record: JsonObj = {
        "key_id": key.key_id,
        "key_server": server,
        "key_manager": server,
        "key_type": key.key_type,
        "key_tag": key.key_tag,
        "key_store": "external",
        "key_store_type": "kmip",
        "key_user": owner,
        "restored": node.uuid not in key.unrestored,
        "encryption_algorithm": "XTS-AES-256",
        "node": _node(node),
        "security_key_manager": {"uuid": km.uuid},
        "svm": {"name": owner} if km.svm is None else {"name": km.svm.name, "uuid": km.svm.uuid},
        "_links": _links(f"{key_manager_href(km)}/keys/{node.uuid}/key-ids/{key.key_id}"),
    }
    return record


def job_record(job: SimJob) -> JsonObj:
    """``GET /api/cluster/jobs/{uuid}``."""
    record: JsonObj = {
        "uuid": job.uuid,
        "description": job.description,
        "state": job.state,
        "message": job.message,
        "code": job.code,
    }
    if job.error is not None:
        record["error"] = job.error
    record["_links"] = _links(f"/api/cluster/jobs/{job.uuid}")
    return record
