"""One cluster's REST API over its model: routes, answers and key-server writes, without sockets.

``route`` names a path's template; ``ClusterApi.handle`` answers a request with a ``Reply``.
Faults that need the cluster's RNG or the event loop (a transient KMIP failure, an answer
dropped after applying, a job finishing later) are asked of the ``Hooks`` the server gives.
Besides adding servers: removing them (DELETE, refused while a server is the only holder
of keys), their connectivity per node, the keys per node, and restoring keys (a job).
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from typing import Final, Protocol

from bulkkm.servers import normalize_server
from bulkkm.simulator import _errors as codes
from bulkkm.simulator import _query, _records
from bulkkm.simulator._errors import SimError, error_body
from bulkkm.simulator._journal import VerifyKind, VerifyRecord, WriteRecord
from bulkkm.simulator._model import NodeState, SimCluster, SimKeyManager, SimNode, server_state
from bulkkm.simulator._query import JsonObj
from bulkkm.simulator._records import SimJob
from bulkkm.simulator._rules import (
    NewServer,
    Restore,
    check_add,
    check_remove,
    parse_force,
    parse_patch,
    parse_post,
    parse_restore,
)

__all__ = ["ClusterApi", "Hooks", "Reply", "Route", "route"]

_KM: Final = "/api/security/key-managers"


class Hooks(Protocol):
    """What the API asks of the server that runs it."""

    def transient(self) -> str | None:
        """A transient KMIP code to fail a key-server POST with, or None."""
        ...

    def ambiguous(self) -> bool:
        """Whether to drop the answer to a POST that was just applied."""
        ...

    def answer_fault(self) -> str | None:
        """The wrong answer to give a POST just applied (a ``Faults`` field name), or None."""
        ...

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds (job progress)."""
        ...

    def quorum(self) -> bool:
        """Whether a key-server DELETE fails with 65536600 (a node out of quorum)."""
        ...

    def locked(self) -> bool:
        """Whether a key-server DELETE fails with 2621573 (the SVM is locked for a while)."""
        ...

    def applied_error(self) -> bool:
        """Whether to answer 500 to a DELETE just applied."""
        ...

    def connect_delay(self) -> float:
        """Seconds before one node reaches a server just added (0: at once)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """An answer to send, or (``drop``) a connection to close without one."""

    status: int = 200
    body: JsonObj = dataclasses.field(default_factory=dict)
    raw: bytes | None = None
    """A body sent as it is instead of ``body`` (an answer ONTAP would not send)."""
    location: str | None = None
    drop: bool = False


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A request path resolved: its template, the resource kind and the path's parameters."""

    template: str
    kind: str
    uuid: str = ""
    server: str = ""
    node: str = ""
    key_id: str = ""


def route(raw_path: str) -> Route:
    """Name the resource a path addresses (kind ``unknown`` if none)."""
    path = raw_path.split("?", 1)[0]
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    match parts:
        case ["api", "cluster"]:
            return Route(template="/api/cluster", kind="cluster")
        case ["api", "cluster", "jobs", job]:
            return Route(template="/api/cluster/jobs/{uuid}", kind="job", uuid=job)
        case ["api", "svm", "svms"]:
            return Route(template="/api/svm/svms", kind="svms")
        case ["api", "svm", "svms", svm]:
            return Route(template="/api/svm/svms/{uuid}", kind="svm", uuid=svm)
        case ["api", "security", "key-managers"]:
            return Route(template=_KM, kind="key_managers")
        case ["api", "security", "key-managers", km]:
            return Route(template=f"{_KM}/{{uuid}}", kind="key_manager", uuid=km)
        case ["api", "security", "key-managers", km, "key-servers"]:
            return Route(template=f"{_KM}/{{uuid}}/key-servers", kind="key_servers", uuid=km)
        case ["api", "security", "key-managers", km, "key-servers", server]:
            return Route(
                template=f"{_KM}/{{uuid}}/key-servers/{{server}}",
                kind="key_server",
                uuid=km,
                server=server,
            )
        case ["api", "security", "key-managers", km, "keys", node, "key-ids"]:
            template = f"{_KM}/{{uuid}}/keys/{{node.uuid}}/key-ids"
            return Route(template=template, kind="key_ids", uuid=km, node=node)
        case ["api", "security", "key-managers", km, "keys", node, "key-ids", key_id]:
            template = f"{_KM}/{{uuid}}/keys/{{node.uuid}}/key-ids/{{key_id}}"
            return Route(template=template, kind="key_id", uuid=km, node=node, key_id=key_id)
        case ["api", "security", "key-managers", km, "restore"]:
            return Route(template=f"{_KM}/{{uuid}}/restore", kind="restore", uuid=km)
    return Route(template=path, kind="unknown")


_METHODS: Final[dict[str, frozenset[str]]] = {
    "cluster": frozenset({"GET"}),
    "job": frozenset({"GET"}),
    "svms": frozenset({"GET"}),
    "svm": frozenset({"GET"}),
    "key_managers": frozenset({"GET"}),
    "key_manager": frozenset({"GET"}),
    "key_servers": frozenset({"GET", "POST"}),
    "key_server": frozenset({"GET", "PATCH", "DELETE"}),
    "key_ids": frozenset({"GET"}),
    "key_id": frozenset({"GET"}),
    "restore": frozenset({"POST"}),
}
_SINCE: Final[dict[str, int]] = {"key_ids": 11, "key_id": 11, "restore": 13}
"""The ONTAP 9 minor release each newer endpoint appeared in; before it, the API is not found."""


class ClusterApi:
    """The REST API of one simulated cluster."""

    def __init__(
        self,
        cluster: SimCluster,
        *,
        hooks: Hooks,
        writes: list[WriteRecord],
        checks: list[VerifyRecord],
        job_mode: bool,
        job_delay: float,
    ) -> None:
        """Serve ``cluster``, logging writes to ``writes`` and verification reads to ``checks``."""
        self.cluster = cluster
        self.jobs: dict[str, SimJob] = {}
        self._hooks = hooks
        self._writes = writes
        self._checks = checks
        self._job_mode = job_mode
        self._job_delay = job_delay

    def handle(
        self, method: str, where: Route, raw_path: str, query: Mapping[str, str], body: bytes
    ) -> Reply:
        """Answer one authenticated request; ONTAP errors become error replies."""
        allowed = _METHODS.get(where.kind)
        since = _SINCE.get(where.kind)
        if allowed is None or (since is not None and not self.cluster.at_least(since)):
            return Reply(status=404, body=error_body(codes.API_NOT_FOUND, "API not found."))
        if method not in allowed:
            return Reply(
                status=405,
                body=error_body(codes.METHOD_NOT_ALLOWED, f"Method {method} is not allowed."),
            )
        try:
            return self._dispatch(method, where, raw_path, query, body)
        except SimError as exc:
            return Reply(status=exc.status, body=exc.body())

    def _dispatch(
        self, method: str, where: Route, raw_path: str, query: Mapping[str, str], body: bytes
    ) -> Reply:
        """Call the handler of the route."""
        path = raw_path.split("?", 1)[0]
        cluster = self.cluster
        match where.kind, method:
            case "cluster", _:
                record = _records.cluster_record(cluster)
                return Reply(body=_query.instance(record, query=query, schema=_records.CLUSTER))
            case "job", _:
                job = self.jobs.get(where.uuid)
                if job is None:
                    raise _not_found("job", where.uuid)
                record = _records.job_record(job)
                return Reply(body=_query.instance(record, query=query, schema=_records.JOB))
            case "svms", _:
                records = [_records.svm_record(svm) for svm in cluster.svms]
                return Reply(body=_collection(records, path, raw_path, query, _records.SVM))
            case "svm", _:
                for svm in cluster.svms:
                    if svm.uuid == where.uuid:
                        record = _records.svm_record(svm)
                        return Reply(body=_query.instance(record, query=query, schema=_records.SVM))
                raise _not_found("svm", where.uuid)
            case "key_managers", _:
                records = [
                    _records.key_manager_record(cluster, km) for km in cluster.key_managers.values()
                ]
                return Reply(body=_collection(records, path, raw_path, query, _records.KEY_MANAGER))
            case "key_manager", _:
                record = _records.key_manager_record(cluster, self._key_manager(where.uuid))
                return Reply(body=_query.instance(record, query=query, schema=_records.KEY_MANAGER))
            case "key_servers", "GET":
                return self._get_key_servers(where, path, raw_path, query)
            case "key_servers", _:
                return self._post(self._key_manager(where.uuid), query, body)
            case "key_server", "GET":
                return self._get_key_servers(where, path, raw_path, query)
            case "key_server", "PATCH":
                return self._patch(self._key_manager(where.uuid), where.server, body)
            case "key_server", _:
                return self._delete(self._key_manager(where.uuid), where.server, query)
            case (("key_ids" | "key_id"), _):
                return self._get_keys(where, path, raw_path, query)
            case _:
                return self._restore(self._key_manager(where.uuid), body)

    def _get_key_servers(
        self, where: Route, path: str, raw_path: str, query: Mapping[str, str]
    ) -> Reply:
        """Key servers (all, or the one ``where`` names), with ``connectivity`` when asked."""
        cluster = self.cluster
        km = self._key_manager(where.uuid)
        now = time.monotonic()
        records = _records.key_server_records(cluster, km, now)
        schema = _records.key_server_schema(cluster)
        if where.kind == "key_servers":
            answer = _collection(records, path, raw_path, query, schema)
            returned = answer.get("records")
            self._log_connectivity(km, returned if isinstance(returned, list) else [], now)
            return Reply(body=answer)
        server = _existing(km, where.server)
        (record,) = (r for r in records if r["server"] == server)
        answer = _query.instance(record, query=query, schema=schema)
        self._log_connectivity(km, [answer], now)
        return Reply(body=answer)

    def _get_keys(self, where: Route, path: str, raw_path: str, query: Mapping[str, str]) -> Reply:
        """The keys on one node (all, or the one ``where`` names), 9.11 and later."""
        cluster = self.cluster
        km = self._key_manager(where.uuid)
        node = self._node(where.node)
        if where.kind == "key_ids":
            records = [_records.key_id_record(cluster, km, node, key) for key in km.keys]
            self._log_keys(km, node)
            return Reply(body=_collection(records, path, raw_path, query, _records.KEY_ID))
        for key in km.keys:
            if key.key_id == where.key_id:
                record = _records.key_id_record(cluster, km, node, key)
                return Reply(body=_query.instance(record, query=query, schema=_records.KEY_ID))
        raise _not_found("key_id", where.key_id)

    def _key_manager(self, km_uuid: str) -> SimKeyManager:
        """The key manager with this uuid; ONTAP's 404 if there is none."""
        km = self.cluster.key_managers.get(km_uuid)
        if km is None:
            raise _not_found("uuid", km_uuid)
        return km

    def _node(self, node_uuid: str) -> SimNode:
        """The node with this uuid; ONTAP's 404 if there is none."""
        try:
            return self.cluster.node(node_uuid)
        except KeyError:
            raise _not_found("node.uuid", node_uuid) from None

    def _log(
        self,
        method: str,
        km: SimKeyManager,
        server: str,
        *,
        applied: bool,
        status: int | None,
        code: str | None = None,
        force: bool = False,
    ) -> None:
        """Record one write."""
        self._writes.append(
            WriteRecord(
                cluster=self.cluster.name,
                method=method,
                key_manager_uuid=km.uuid,
                server=server,
                applied=applied,
                at=time.monotonic(),
                status=status,
                code=code,
                force=force,
            )
        )

    def _log_connectivity(self, km: SimKeyManager, returned: list[object], now: float) -> None:
        """Record, per key server, an answer that showed its ``connectivity``."""
        for record in returned:
            if not isinstance(record, dict) or "connectivity" not in record:
                continue
            server = str(record["server"])
            states = [server_state(km, server, node, now) for node in self.cluster.nodes]
            self._checks.append(
                VerifyRecord(
                    cluster=self.cluster.name,
                    kind=VerifyKind.CONNECTIVITY,
                    key_manager_uuid=km.uuid,
                    server=server,
                    at=now,
                    passed=all(state is NodeState.AVAILABLE for state in states),
                    states=tuple(str(state) for state in states),
                )
            )

    def _log_keys(self, km: SimKeyManager, node: SimNode) -> None:
        """Record a read of the keys on one node."""
        self._checks.append(
            VerifyRecord(
                cluster=self.cluster.name,
                kind=VerifyKind.KEYS,
                key_manager_uuid=km.uuid,
                server="",
                at=time.monotonic(),
                passed=all(node.uuid not in key.unrestored for key in km.keys),
                node_uuid=node.uuid,
            )
        )

    def _apply(self, km: SimKeyManager, servers: tuple[NewServer, ...]) -> None:
        """Check ONTAP's rules and the faults, then add every server (all or nothing)."""
        check_add(self.cluster, km, servers)
        transient = self._hooks.transient()
        if transient is not None:
            raise SimError(transient)
        now = time.monotonic()
        for new in servers:
            km.servers[new.server] = new.secondary_key_servers
            self._connect(km, new.server, now)
            if self.cluster.new_server_copies:
                for key in km.keys:
                    if key.replicated:
                        key.holders.add(new.server)

    def _connect(self, km: SimKeyManager, server: str, now: float) -> None:
        """Start a server just added connecting from each node, after a seeded delay."""
        km.available_at.pop(server, None)
        for node in self.cluster.nodes:
            delay = self._hooks.connect_delay()
            if delay > 0:
                km.available_at.setdefault(server, {})[node.uuid] = now + delay

    def _post(self, km: SimKeyManager, query: Mapping[str, str], body: bytes) -> Reply:
        """Add primaries: 201 with ``Location`` (or 202 and a job in job mode)."""
        try:
            servers = parse_post(self.cluster, body)
        except SimError as exc:
            self._log("POST", km, "", applied=False, status=exc.status, code=exc.code)
            raise
        # With ``records`` the Location names the first server (NetApp's client reads it only
        # after a single-server POST).
        location = _records.key_server_href(km, servers[0].server)
        if self._job_mode:
            return self._post_job(km, servers, location)
        try:
            self._apply(km, servers)
        except SimError as exc:
            for new in servers:
                self._log("POST", km, new.server, applied=False, status=exc.status, code=exc.code)
            raise
        dropped = self._hooks.ambiguous()
        wrong = None if dropped else self._wrong_answer(location)
        status = None if dropped else 201 if wrong is None else wrong.status
        for new in servers:
            self._log("POST", km, new.server, applied=True, status=status)
        if dropped:
            return Reply(drop=True)
        if wrong is not None:
            return wrong
        body_out: JsonObj = {}
        # return_records is ONTAP 9.7 and later; earlier versions ignore it.
        if _query.return_records(query) and self.cluster.at_least(7):
            records: list[JsonObj] = []
            for new in servers:
                record: JsonObj = {"server": new.server}
                if new.secondary_key_servers:
                    record["secondary_key_servers"] = list(new.secondary_key_servers)
                records.append(record)
            body_out = {"num_records": len(records), "records": records}
        return Reply(status=201, body=body_out, location=location)

    def _wrong_answer(self, location: str) -> Reply | None:
        """The answer a fault gives a POST just applied instead of its 201, if one does."""
        match self._hooks.answer_fault():
            case "applied_error500_rate":
                return Reply(
                    status=500, body=error_body(codes.INTERNAL, codes.MESSAGES[codes.INTERNAL])
                )
            case "garbled_201_rate":
                return Reply(status=201, raw=b'{"num_records": 1, "recor', location=location)
            case "empty_204_rate":
                return Reply(status=204, raw=b"")
            case "jobless_202_rate":
                # The job exists and has succeeded; only the link to it is missing.
                job = SimJob(uuid=str(uuid.uuid4()), description="POST key-servers")
                job.state, job.message = "success", "success"
                self.jobs[job.uuid] = job
                return Reply(status=202, body={"job": {"uuid": job.uuid}}, location=location)
        return None

    def _post_job(self, km: SimKeyManager, servers: tuple[NewServer, ...], location: str) -> Reply:
        """Answer 202 with a job that applies the change when it finishes."""
        job = SimJob(
            uuid=str(uuid.uuid4()),
            description=f"POST {_KM}/{km.uuid}/key-servers",
        )
        self.jobs[job.uuid] = job
        dropped = self._hooks.ambiguous()

        def run() -> None:
            """Move the job to running."""
            job.state = "running"

        def finish() -> None:
            """Apply the change and record how the job ended."""
            status = None if dropped else 202
            try:
                self._apply(km, servers)
            except SimError as exc:
                job.state, job.message, job.code = "failure", exc.message, int(exc.code)
                job.error = exc.error()
                for new in servers:
                    self._log("POST", km, new.server, applied=False, status=status, code=exc.code)
                return
            job.state, job.message = "success", "success"
            for new in servers:
                self._log("POST", km, new.server, applied=True, status=status)

        self._hooks.later(self._job_delay / 2, run)
        self._hooks.later(self._job_delay, finish)
        if dropped:
            return Reply(drop=True)
        href = f"/api/cluster/jobs/{job.uuid}"
        return Reply(
            status=202,
            body={"job": {"uuid": job.uuid, "_links": {"self": {"href": href}}}},
            location=location,
        )

    def _patch(self, km: SimKeyManager, raw_server: str, body: bytes) -> Reply:
        """Replace a primary's secondaries whole; 200 ``{}``."""
        server = _existing(km, raw_server)
        try:
            secondaries = parse_patch(self.cluster, body)
        except SimError as exc:
            self._log("PATCH", km, server, applied=False, status=exc.status, code=exc.code)
            raise
        if secondaries is not None:
            km.servers[server] = secondaries
        self._log("PATCH", km, server, applied=secondaries is not None, status=200)
        return Reply()

    def _delete(self, km: SimKeyManager, raw_server: str, query: Mapping[str, str]) -> Reply:
        """Remove a primary: 200 ``{}``; refused as ONTAP refuses, or failed by a fault."""
        server = _configured(km, raw_server)
        name = server or _normalized(raw_server)
        force = False
        try:
            force = parse_force(self.cluster, query)
            if server is None:
                raise SimError(codes.NOT_CONFIGURED, target="server")
            check_remove(km, server)
            if not force and self._hooks.quorum():
                raise SimError(codes.OUT_OF_QUORUM)
            if self._hooks.locked():
                raise SimError(codes.VSERVER_LOCKED)
        except SimError as exc:
            self._log(
                "DELETE", km, name, applied=False, status=exc.status, code=exc.code, force=force
            )
            raise
        del km.servers[server]
        km.available_at.pop(server, None)
        dropped = self._hooks.ambiguous()
        failed = not dropped and self._hooks.applied_error()
        status = None if dropped else 500 if failed else 200
        self._log("DELETE", km, server, applied=True, status=status, force=force)
        if dropped:
            return Reply(drop=True)
        if failed:
            return Reply(
                status=500, body=error_body(codes.INTERNAL, codes.MESSAGES[codes.INTERNAL])
            )
        return Reply()

    def _restore(self, km: SimKeyManager, body: bytes) -> Reply:
        """Restore keys from a primary: 202 and a job (always, as ONTAP documents it)."""
        request = parse_restore(self.cluster, km, body)
        job = SimJob(uuid=str(uuid.uuid4()), description=f"POST {_KM}/{km.uuid}/restore")
        self.jobs[job.uuid] = job

        def run() -> None:
            """Move the job to running."""
            job.state = "running"

        self._hooks.later(self._job_delay / 2, run)
        self._hooks.later(self._job_delay, lambda: self._finish_restore(km, request, job))
        href = f"/api/cluster/jobs/{job.uuid}"
        return Reply(
            status=202, body={"job": {"uuid": job.uuid, "_links": {"self": {"href": href}}}}
        )

    def _finish_restore(self, km: SimKeyManager, request: Restore, job: SimJob) -> None:
        """Restore on every node that reaches the server; the server then holds every key."""
        now = time.monotonic()
        server = request.key_server
        nodes = [n for n in self.cluster.nodes if request.node_uuid in (None, n.uuid)]
        error: SimError | None = None
        if server not in km.servers:
            error = SimError(codes.NOT_CONFIGURED, status=400, target="key_server")
        else:
            reached = [n for n in nodes if server_state(km, server, n, now) is NodeState.AVAILABLE]
            missed = [n.name for n in nodes if n not in reached]
            keys = [
                key
                for key in km.keys
                if key.held_by(km)
                and request.key_id in (None, key.key_id)
                and request.key_tag in (None, key.key_tag)
            ]
            if reached:
                # The simulator's shortcut: the server restored from now holds every key.
                for key in keys:
                    key.holders.add(server)
                    key.unrestored.difference_update(n.uuid for n in reached)
            if missed:
                # Inference: ONTAP's code for a key server a node cannot reach during restore.
                message = f"Unable to restore keys from {server} on node(s) {', '.join(missed)}."
                error = SimError(codes.KMIP_COMMAND, message, target="key_server")
        if error is None:
            job.state, job.message = "success", "success"
        else:
            job.state, job.message, job.code = "failure", error.message, int(error.code)
            job.error = error.error()
        self._checks.append(
            VerifyRecord(
                cluster=self.cluster.name,
                kind=VerifyKind.RESTORE,
                key_manager_uuid=km.uuid,
                server=server,
                at=now,
                passed=error is None,
            )
        )


def _not_found(target: str, value: str) -> SimError:
    """ONTAP's 404: the entry does not exist."""
    return SimError(
        codes.NOT_FOUND, f'Entry doesn\'t exist for "{value}".', status=404, target=target
    )


def _normalized(raw_server: str) -> str:
    """A server name as the path gives it, normalised when it can be."""
    try:
        return normalize_server(raw_server)
    except ValueError:
        return raw_server


def _configured(km: SimKeyManager, raw_server: str) -> str | None:
    """The configured primary a path names (raw or encoded, port implied), if there is one."""
    if raw_server in km.servers:
        return raw_server
    server = _normalized(raw_server)
    return server if server in km.servers else None


def _existing(km: SimKeyManager, raw_server: str) -> str:
    """The configured primary a path names; ONTAP's 404 if none."""
    server = _configured(km, raw_server)
    if server is None:
        raise _not_found("server", raw_server)
    return server


def _collection(
    records: list[JsonObj],
    path: str,
    raw_path: str,
    query: Mapping[str, str],
    schema: _query.Schema,
) -> JsonObj:
    """A collection answer for ``records`` under this request's query."""
    return _query.collection(records, path=path, self_href=raw_path, query=query, schema=schema)
