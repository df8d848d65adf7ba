"""The model rendered as ONTAP's JSON records, and the schemas of those records."""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Final

from bulkkm.simulator._model import Mode, SimCluster, SimKeyManager, SimSvm
from bulkkm.simulator._query import JsonObj, Schema

__all__ = [
    "CLUSTER",
    "JOB",
    "KEY_MANAGER",
    "KEY_SERVER",
    "SVM",
    "SimJob",
    "cluster_record",
    "job_record",
    "key_manager_href",
    "key_manager_record",
    "key_server_href",
    "key_server_records",
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
KEY_SERVER: Final = Schema.of(
    ("server", "secondary_key_servers", "timeout", "username",
     "connectivity.cluster_availability", "connectivity.node_states"),
    keys=("server",),
    expensive=("connectivity",),
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


def key_server_records(cluster: SimCluster, km: SimKeyManager) -> list[JsonObj]:
    """The records of ``GET .../key-servers`` (secondaries as an array)."""
    records: list[JsonObj] = []
    for server, secondaries in km.servers.items():
        record: JsonObj = {"server": server}
        if secondaries and cluster.at_least(8):
            record["secondary_key_servers"] = list(secondaries)
        record["_links"] = _links(key_server_href(km, server))
        records.append(record)
    return records


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
