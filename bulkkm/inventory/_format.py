"""The vocabulary of the inventory file: its keys, name rules and key paths.

The parser, the JSON Schema and the tests all read these constants, so the keys the parser
accepts and the keys the schema documents cannot drift apart.
"""

from __future__ import annotations

import re
from typing import Final, TypeAlias

__all__ = [
    "CLUSTER_KEYS",
    "CLUSTER_ONLY_KEYS",
    "GLOB_CHARS",
    "GROUP_KEYS",
    "LIMITS_KEYS",
    "MAX_WAVE",
    "NAME_RE",
    "REGION_RE",
    "ROLLOUT_KEYS",
    "SECRET_PREFIXES",
    "SERVER_KEYS",
    "SETTINGS_KEYS",
    "SVM_KEYS",
    "SVM_NAME_RE",
    "TIME_RE",
    "TLS_KEYS",
    "TOP_KEYS",
    "VERSION",
    "WINDOW_KEYS",
    "KeyPath",
    "render_path",
]

KeyPath: TypeAlias = tuple[str | int, ...]
"""Where a value sits in the file: mapping keys are ``str``, list indexes ``int``."""

VERSION: Final = 1

TOP_KEYS: Final = (
    "version",
    "allow_plaintext_secrets",
    "defaults",
    "groups",
    "clusters",
    "rollout",
)
SETTINGS_KEYS: Final = (
    "username",
    "password",
    "tls",
    "limits",
    "key_servers",
    "retire_servers",
    "svms",
    "exclude_svms",
    "cluster_scope",
    "window",
    "region",
)
"""Keys that ``defaults``, a group and a cluster may all set (the inherited ones)."""
GROUP_KEYS: Final = (*SETTINGS_KEYS, "wave")
"""Keys a group may set: the settings and ``wave`` (in defaults it would pin every cluster)."""
CLUSTER_ONLY_KEYS: Final = ("name", "address", "groups")
CLUSTER_KEYS: Final = CLUSTER_ONLY_KEYS + GROUP_KEYS
WINDOW_KEYS: Final = ("days", "start", "end", "tz")
ROLLOUT_KEYS: Final = (
    "waves",
    "wave_order",
    "max_fail_percent",
    "max_failures",
    "pause_between_waves",
)
TLS_KEYS: Final = ("verify", "ca_file", "client_cert", "client_key")
LIMITS_KEYS: Final = ("concurrency", "rate", "timeout")
SERVER_KEYS: Final = ("server", "secondary_key_servers", "password")
SVM_KEYS: Final = ("name", "key_servers", "retire_servers")

MAX_WAVE: Final = 1000
"""The highest wave a cluster may be pinned to: beyond it, a typo rather than a plan."""

SECRET_PREFIXES: Final = ("env:", "file:")
NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""Cluster and group names: letters, digits, ``_``, ``-``, ``.``, not starting with ``-``/``.``."""
REGION_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
"""A region (the worker's Temporal task queue ``bulkkm-REGION``): a short lower-case identifier."""
SVM_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
GLOB_CHARS: Final = frozenset("*?[")
TIME_RE: Final = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])")
"""A window's ``start``/``end``: ``HH:MM``, 24-hour (the schema uses the same pattern)."""
_PLAIN_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def render_path(path: KeyPath) -> str:
    """``("clusters", 3, "svms", 1)`` -> ``clusters[3].svms[1]``; odd keys are quoted."""
    parts: list[str] = []
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            parts.append(f".{step}" if parts else step)
        else:
            quoted = step.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'["{quoted}"]')
    return "".join(parts)
