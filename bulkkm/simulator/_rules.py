"""ONTAP's rules for key-server writes: what a request body may say and when a change is refused.

Parsing (``parse_post``, ``parse_patch``, ``parse_restore``, ``parse_force``) checks the
shape of a request and answers at once; ``check_add`` checks the cluster's state and runs
when the change is applied (at once, or when the job finishes in job mode);
``check_remove`` is the safety net of a DELETE (65536700). All raise ``SimError``; nothing
here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

import orjson

from bulkkm.servers import normalize_server
from bulkkm.simulator import _errors as codes
from bulkkm.simulator._errors import SimError
from bulkkm.simulator._model import Mode, Scope, SimCluster, SimKeyManager

__all__ = [
    "NewServer",
    "Restore",
    "check_add",
    "check_remove",
    "parse_force",
    "parse_patch",
    "parse_post",
    "parse_restore",
]

_MAX_PRIMARIES: Final = 4
_MAX_SECONDARIES: Final = 3
_POST_KEYS: Final = frozenset({"server", "secondary_key_servers", "password", "records"})
_RECORD_KEYS: Final = frozenset({"server", "secondary_key_servers", "password"})
_PATCH_KEYS: Final = frozenset({"secondary_key_servers", "password"})
_RESTORE_KEYS: Final = frozenset({"key_server", "key_id", "key_tag", "node"})
_FORCE_SINCE: Final = 11  # ONTAP 9.11 added ``force`` to key-server DELETE


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NewServer:
    """One primary a POST asks for, name normalised; its password is read and dropped."""

    server: str
    secondary_key_servers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Restore:
    """What a restore asks: the primary to restore from, and optionally which keys and node."""

    key_server: str
    key_id: str | None = None
    key_tag: str | None = None
    node_uuid: str | None = None


def _unexpected(name: str) -> SimError:
    """ONTAP's answer to a field it does not accept here."""
    return SimError(codes.UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".', target=name)


def _object(body: bytes) -> dict[str, object]:
    """The JSON object of a request body."""
    try:
        value = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise SimError(codes.INVALID_JSON, "Invalid JSON input in the request body.") from None
    if not isinstance(value, dict):
        raise SimError(codes.INVALID_JSON, "The request body must be a JSON object.")
    return value


def _secondaries(value: object, cluster: SimCluster) -> tuple[str, ...]:
    """A ``secondary_key_servers`` array, kept as sent (9.8 and later only)."""
    if not cluster.at_least(8):
        raise _unexpected("secondary_key_servers")
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise SimError(
            codes.INVALID_VALUE,
            "Field secondary_key_servers must be an array of server names.",
            target="secondary_key_servers",
        )
    if len(value) > _MAX_SECONDARIES:
        raise SimError(
            codes.INVALID_VALUE,
            f"A maximum of {_MAX_SECONDARIES} secondary key servers are allowed.",
            target="secondary_key_servers",
        )
    return tuple(v.strip() for v in value)


def _new_server(
    entry: dict[str, object], allowed: frozenset[str], cluster: SimCluster
) -> NewServer:
    """One server entry of a POST (the top level or a ``records`` item)."""
    for name in entry:
        if name not in allowed:
            raise _unexpected(name)
    raw = entry.get("server")
    if raw is None:
        raise SimError(codes.MISSING_FIELD, 'Missing value for field "server".', target="server")
    if not isinstance(raw, str):
        raise SimError(codes.INVALID_VALUE, "Field server must be a string.", target="server")
    try:
        server = normalize_server(raw)
    except ValueError:
        raise SimError(
            codes.INVALID_VALUE, f'Invalid value "{raw}" for field "server".', target="server"
        ) from None
    password = entry.get("password")
    if password is not None and not isinstance(password, str):
        raise SimError(codes.INVALID_VALUE, "Field password must be a string.", target="password")
    secondaries: tuple[str, ...] = ()
    if "secondary_key_servers" in entry:
        secondaries = _secondaries(entry["secondary_key_servers"], cluster)
    return NewServer(server=server, secondary_key_servers=secondaries)


def parse_post(cluster: SimCluster, body: bytes) -> tuple[NewServer, ...]:
    """The servers a key-server POST asks for: ``server`` or ``records``, never both."""
    document = _object(body)
    if "records" not in document:
        return (_new_server(document, _POST_KEYS - {"records"}, cluster),)
    # Inference: ONTAP documents ``records`` from 9.8 on; we answer earlier versions as
    # ONTAP answers any field it does not know, with the unexpected-argument error.
    if not cluster.at_least(8):
        raise _unexpected("records")
    for name in document:
        if name != "records":
            raise SimError(
                codes.INVALID_VALUE,
                f'Field "{name}" cannot be set together with "records".',
                target=name,
            )
    records = document["records"]
    if not isinstance(records, list) or not records:
        raise SimError(
            codes.INVALID_VALUE, "Field records must be a non-empty array.", target="records"
        )
    parsed: list[NewServer] = []
    for entry in records:
        if not isinstance(entry, dict):
            raise SimError(codes.INVALID_VALUE, "Each record must be an object.", target="records")
        parsed.append(_new_server(entry, _RECORD_KEYS, cluster))
    return tuple(parsed)


def parse_patch(cluster: SimCluster, body: bytes) -> tuple[str, ...] | None:
    """The new secondaries of a key-server PATCH (None: unchanged); they replace the old whole."""
    document = _object(body)
    for name in document:
        if name not in _PATCH_KEYS:
            raise _unexpected(name)
    password = document.get("password")
    if password is not None and not isinstance(password, str):
        raise SimError(codes.INVALID_VALUE, "Field password must be a string.", target="password")
    if "secondary_key_servers" not in document:
        return None
    return _secondaries(document["secondary_key_servers"], cluster)


def check_add(cluster: SimCluster, km: SimKeyManager, servers: tuple[NewServer, ...]) -> None:
    """Refuse the addition as ONTAP would, or return so that it can be applied whole."""
    if km.scope is Scope.SVM and cluster.metrocluster:
        raise SimError(codes.METROCLUSTER)
    if km.scope is Scope.SVM and cluster.multitenant_unsupported:
        raise SimError(codes.MULTITENANT_UNSUPPORTED)
    if km.mode is not Mode.EXTERNAL:
        raise SimError(codes.NOT_EXTERNAL)
    if km.client_certificate_missing:
        raise SimError(codes.CERTIFICATE_MISSING)
    names = [s.server for s in servers]
    if len(set(names)) != len(names):
        raise SimError(codes.DUPLICATE, target="server")
    if any(name in km.servers for name in names):
        raise SimError(codes.ALREADY_CONFIGURED, target="server")
    if len(km.servers) + len(names) > _MAX_PRIMARIES:
        raise SimError(codes.MAX_SERVERS, target="server")
    for name in names:
        code = cluster.kmip_errors.get(name)
        if code is not None:
            raise SimError(code, target="server")


def check_remove(km: SimKeyManager, server: str) -> None:
    """Refuse removing the only configured holder of keys in use (65536700), as ONTAP does."""
    if km.sole_holder_of(server):
        raise SimError(codes.KEYS_IN_USE, target="server")


def parse_force(cluster: SimCluster, query: Mapping[str, str]) -> bool:
    """The ``force`` flag of a key-server DELETE (9.11 and later; default false)."""
    raw = query.get("force")
    if raw is None:
        return False
    if not cluster.at_least(_FORCE_SINCE):
        raise _unexpected("force")
    if raw.lower() not in ("true", "false"):
        raise SimError(codes.INVALID_VALUE, f'Invalid value for "force": {raw!r}.', target="force")
    return raw.lower() == "true"


def _text_field(document: dict[str, object], name: str) -> str | None:
    """An optional string field of a request body."""
    value = document.get(name)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SimError(codes.INVALID_VALUE, f"Field {name} must be a string.", target=name)
    return value


def _restore_node(cluster: SimCluster, value: object) -> str | None:
    """The uuid of the node a restore names (by ``uuid`` or ``name``), if it names one."""
    if value is None:
        return None
    if isinstance(value, dict) and (value.get("uuid") or value.get("name")):
        for node in cluster.nodes:
            if value.get("uuid") in (None, node.uuid) and value.get("name") in (None, node.name):
                return node.uuid
    raise SimError(codes.INVALID_VALUE, "Field node names no node of the cluster.", target="node")


def parse_restore(cluster: SimCluster, km: SimKeyManager, body: bytes) -> Restore:
    """A restore request: ``key_server`` (a configured primary), optional key and node."""
    document = _object(body)
    for name in document:
        if name not in _RESTORE_KEYS:
            raise _unexpected(name)
    if km.mode is not Mode.EXTERNAL:
        raise SimError(codes.NOT_EXTERNAL)
    raw = _text_field(document, "key_server")
    if raw is None:
        raise SimError(
            codes.MISSING_FIELD, 'Missing value for field "key_server".', target="key_server"
        )
    try:
        server = normalize_server(raw)
    except ValueError:
        server = raw
    if server not in km.servers:
        # Inference: ONTAP restores only from a configured primary; the code is DELETE's.
        raise SimError(codes.NOT_CONFIGURED, status=400, target="key_server")
    return Restore(
        key_server=server,
        key_id=_text_field(document, "key_id"),
        key_tag=_text_field(document, "key_tag"),
        node_uuid=_restore_node(cluster, document.get("node")),
    )
