"""A bulkkm inventory (the contract's YAML format) naming every cluster of a simulated fleet."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from bulkkm.simulator._model import SimCluster

__all__ = ["write_inventory"]


def _merge(base: dict[str, object], extra: Mapping[str, object]) -> dict[str, object]:
    """``base`` updated by ``extra``, mappings merged key by key (as inventory defaults are)."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _plain(value: object) -> object:
    """``value`` with tuples as lists and mappings as dicts, as ``yaml.safe_dump`` wants."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_inventory(
    path: Path,
    *,
    clusters: Sequence[SimCluster],
    ca_file: Path,
    username: str,
    password: str,
    key_servers: Sequence[object],
    concurrency: int,
    svms: str | Sequence[object],
    cluster_scope: bool,
    extra_defaults: Mapping[str, object] | None,
) -> Path:
    """Write the inventory, a copy of the CA and a password file (mode 0600) beside it.

    The CA and password files are named after the inventory (``fleet-ca.pem``,
    ``fleet.password``) and referenced by absolute path; the password as ``file:``.
    """
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    ca_copy = path.with_name(f"{path.stem}-ca.pem")
    shutil.copyfile(ca_file, ca_copy)
    password_file = path.with_name(f"{path.stem}.password")
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    defaults: dict[str, object] = {
        "username": username,
        "password": f"file:{password_file}",
        "tls": {"verify": True, "ca_file": str(ca_copy)},
        "limits": {"concurrency": concurrency},
        "key_servers": list(key_servers),
    }
    if extra_defaults:
        defaults = _merge(defaults, extra_defaults)
    document = {
        "version": 1,
        "defaults": defaults,
        "clusters": [
            {"name": c.name, "address": c.address, "svms": svms, "cluster_scope": cluster_scope}
            for c in clusters
        ],
    }
    path.write_text(yaml.safe_dump(_plain(document), sort_keys=False), encoding="utf-8")
    return path
