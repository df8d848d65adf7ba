"""The inventory format as JSON Schema (draft 2020-12), for editors and ``bulkkm schema``.

Written by hand for the descriptions editors show; a test keeps its keys equal to the keys
the parser accepts. The schema checks shape only: secrets, files, duplicates and merged
settings are the parser's to check.
"""

from __future__ import annotations

from bulkkm.inventory._format import MAX_WAVE, REGION_RE, TIME_RE
from bulkkm.rollout import DAYS

__all__ = ["inventory_schema"]

_SIMPLE_NAME = "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
_REGION = f"^{REGION_RE.pattern}$"
_SVM_PATTERN = r"^[A-Za-z0-9_.\-*?\[\]!]+$"
_NO_SCHEME = "^(?!.*://)\\s*[^\\s]+\\s*$"
"""One word, no scheme; blanks around it are allowed, as the loader strips them."""
# JSON Schema patterns have no case-insensitive flag: each letter is a class ([sS][aA][tT]).
_DAY_PATTERN = "^(" + "|".join("".join(f"[{c}{c.upper()}]" for c in day) for day in DAYS) + ")$"
_TIME_PATTERN = f"^{TIME_RE.pattern}$"


def _ref(name: str) -> dict[str, object]:
    """A reference to one of the ``$defs``."""
    return {"$ref": f"#/$defs/{name}"}


def _settings_properties() -> dict[str, object]:
    """The inheritable keys: allowed in defaults, in a group and in a cluster."""
    return {
        "username": {
            "type": "string",
            "minLength": 1,
            "description": "ONTAP user name (required unless tls.client_cert is set).",
        },
        "password": {
            **_ref("secret"),
            "description": "ONTAP password: env:NAME or file:PATH.",
        },
        "tls": {**_ref("tls"), "description": "How to reach the HTTPS endpoint (merged)."},
        "limits": {**_ref("limits"), "description": "Load limits per cluster (merged)."},
        "key_servers": {
            **_ref("keyServers"),
            "description": "Key servers every selected key manager must have (replaced).",
        },
        "retire_servers": {
            **_ref("retireServers"),
            "description": (
                "Old key servers that 'migrate' removes from every selected key manager once "
                "the key_servers are verified; 'apply' never removes (replaced)."
            ),
        },
        "svms": {
            "description": (
                "The SVM key managers to update: 'all' (every SVM with an external key "
                "manager) or a list of SVM names, globs and {name, key_servers} entries."
            ),
            "anyOf": [
                {"const": "all"},
                {"type": "array", "items": _ref("svmEntry")},
            ],
        },
        "exclude_svms": {
            "type": "array",
            "items": _ref("svmPattern"),
            "description": "SVM names or globs never selected (the exclusion wins).",
        },
        "cluster_scope": {
            "type": "boolean",
            "description": "Also update the cluster-scoped key manager (admin SVM).",
        },
        "window": {
            "anyOf": [_ref("window"), {"type": "null"}],
            "description": (
                "When the cluster may be changed: a weekly maintenance window. One value: a "
                "window set at a more specific level replaces the inherited one whole (it is "
                "not merged key by key); null removes an inherited window (any time)."
            ),
        },
        "region": {
            "anyOf": [{"type": "string", "pattern": _REGION}, {"type": "null"}],
            "description": (
                "Where the cluster is reachable from: runs with --temporal send it to the "
                "workers of this region (task queue bulkkm-REGION). Null removes an "
                "inherited region."
            ),
        },
    }


def _wave_property() -> dict[str, object]:
    """``wave``: in a group or on a cluster, never in defaults."""
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_WAVE,
        "description": (
            "Pin the cluster (or the group's clusters) to this rollout wave, 1 being the "
            "first (a canary, say), whatever the wave sizes say."
        ),
    }


def _defs() -> dict[str, object]:
    """The reusable parts of the schema."""
    server_name = {
        "type": "string",
        "pattern": _NO_SCHEME,
        "description": "host, host:port, [v6] or [v6]:port; port 5696 when none is given.",
    }
    return {
        "secret": {
            "type": "string",
            "minLength": 1,
            "description": (
                "A secret reference: env:NAME (environment variable) or file:PATH (first "
                "line of the file, relative to the inventory). A literal is refused unless "
                "allow_plaintext_secrets is true."
            ),
        },
        "filePath": {
            "type": "string",
            "minLength": 1,
            "description": "A file path, relative to the inventory file.",
        },
        "serverName": server_name,
        "keyServer": {
            "description": "A KMIP key server: its name, or a mapping with server: and options.",
            "anyOf": [
                _ref("serverName"),
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["server"],
                    "properties": {
                        "server": {**_ref("serverName"), "description": "The key server."},
                        "secondary_key_servers": {
                            "type": "array",
                            "maxItems": 3,
                            "items": _ref("serverName"),
                            "description": "Up to 3 secondary key servers of this server.",
                        },
                        "password": {
                            **_ref("secret"),
                            "description": "KMIP password for this server: env:NAME or file:PATH.",
                        },
                    },
                },
            ],
        },
        "keyServers": {
            "type": "array",
            "maxItems": 4,
            "items": _ref("keyServer"),
            "description": (
                "The key servers every selected key manager must have (at most 4). A list "
                "set at one level replaces the inherited one."
            ),
        },
        "retireServers": {
            "type": "array",
            "maxItems": 4,
            "uniqueItems": True,
            "items": _ref("serverName"),
            "description": (
                "Names of old primary key servers to remove (at most 4; their secondaries go "
                "with them), never one of key_servers. A list set at one level replaces the "
                "inherited one; [] retires nothing."
            ),
        },
        "svmPattern": {
            "type": "string",
            "pattern": _SVM_PATTERN,
            "not": {"const": "all"},
            "description": "An SVM name, or a glob (* ? [...]) over the SVM names found.",
        },
        "svmEntry": {
            "anyOf": [
                _ref("svmPattern"),
                {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["name"],
                    "properties": {
                        "name": {**_ref("svmPattern"), "description": "SVM name or glob."},
                        "key_servers": {
                            **_ref("keyServers"),
                            "description": "Key servers for these SVMs only (not the cluster's).",
                        },
                        "retire_servers": {
                            **_ref("retireServers"),
                            "description": "Old key servers to remove from these SVMs only.",
                        },
                    },
                },
            ],
        },
        "tls": {
            "type": "object",
            "additionalProperties": False,
            "description": "How to reach the cluster's HTTPS endpoint; merged key by key.",
            "properties": {
                "verify": {
                    "type": "boolean",
                    "description": "Check the certificate (default true; false is warned about).",
                },
                "ca_file": {**_ref("filePath"), "description": "CA bundle (PEM) to trust."},
                "client_cert": {
                    **_ref("filePath"),
                    "description": "Client certificate (PEM): instead of a password.",
                },
                "client_key": {
                    **_ref("filePath"),
                    "description": "Private key of client_cert, when not in the same file.",
                },
            },
        },
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "description": "The load bulkkm may put on one cluster; merged key by key.",
            "properties": {
                "concurrency": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 1000000,
                    "description": "Requests in flight per cluster (default 4).",
                },
                "rate": {
                    "type": ["number", "null"],
                    "exclusiveMinimum": 0,
                    "maximum": 1000000,
                    "description": "Requests started per second per cluster (null: none).",
                },
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": 1000000,
                    "description": "Seconds for one request (default 30).",
                },
            },
        },
        "window": {
            "type": "object",
            "additionalProperties": False,
            "required": ["days", "start", "end", "tz"],
            "description": (
                'A weekly maintenance window, e.g. {days: [sat, sun], start: "01:00", end: '
                '"05:00", tz: Europe/Paris}. All four keys are required.'
            ),
            "properties": {
                "days": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {"type": "string", "pattern": _DAY_PATTERN},
                    "description": "The days the window opens: mon, tue, wed, thu, fri, sat, sun.",
                },
                "start": {
                    "type": "string",
                    "pattern": _TIME_PATTERN,
                    "description": (
                        'Opening time, "HH:MM" 24-hour, in quotes (YAML reads an unquoted '
                        "10:30 as a number)."
                    ),
                },
                "end": {
                    "type": "string",
                    "pattern": _TIME_PATTERN,
                    "description": (
                        'Closing time, "HH:MM"; before start: the window runs overnight into '
                        "the next day. Equal to start is an error."
                    ),
                },
                "tz": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The IANA time zone of start and end, e.g. Europe/Paris.",
                },
            },
        },
        "rollout": {
            "type": "object",
            "additionalProperties": False,
            "description": "How the run proceeds in waves; command-line options override each.",
            "properties": {
                "waves": {
                    "description": (
                        'Cumulative wave sizes: "1,10%,100%" or [1, "10%", "100%"] (counts of '
                        "clusters or percentages of the fleet)."
                    ),
                    "anyOf": [
                        {"type": "string", "minLength": 1},
                        {
                            "type": "array",
                            "minItems": 1,
                            "items": {
                                "anyOf": [
                                    {"type": "integer", "minimum": 1},
                                    {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?%?\s*$"},
                                ]
                            },
                        },
                    ],
                },
                "wave_order": {
                    "type": "string",
                    "pattern": "^(inventory|name|random:[0-9]+)$",
                    "description": (
                        "Order of the clusters before they are cut into waves: inventory (as "
                        "written), name, or random:SEED (the same order for the same seed)."
                    ),
                },
                "max_fail_percent": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 100,
                    "description": "Stop starting new work once failures exceed this % (per wave).",
                },
                "max_failures": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Stop starting new work once failures exceed this number.",
                },
                "pause_between_waves": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1000000,
                    "description": "Seconds to wait between one wave and the next.",
                },
            },
        },
        "settings": {
            "type": "object",
            "additionalProperties": False,
            "properties": _settings_properties(),
        },
        "group": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**_settings_properties(), "wave": _wave_property()},
        },
        "cluster": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "address"],
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": _SIMPLE_NAME,
                    "description": "Unique cluster name (letters, digits, _, -, .).",
                },
                "address": {
                    "type": "string",
                    "pattern": _NO_SCHEME,
                    "description": "host, host:port, [v6] or [v6]:port (port 443); always https.",
                },
                "groups": {
                    "type": "array",
                    "items": {"type": "string", "pattern": _SIMPLE_NAME},
                    "description": "Groups to inherit from, in order (later ones win).",
                },
                **_settings_properties(),
                "wave": _wave_property(),
            },
        },
    }


def inventory_schema() -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of an inventory file; a new dict on every call."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:bulkkm:inventory:1",
        "title": "bulkkm inventory",
        "description": "ONTAP clusters and the KMIP key servers their key managers need.",
        "type": "object",
        "additionalProperties": False,
        "required": ["version", "clusters"],
        "properties": {
            "version": {"const": 1, "description": "The format version: 1."},
            "allow_plaintext_secrets": {
                "type": "boolean",
                "description": "Allow passwords written out in the file (default false).",
            },
            "defaults": {
                **_ref("settings"),
                "description": "Settings every cluster inherits.",
            },
            "groups": {
                "type": "object",
                "description": "Named settings that clusters inherit by listing them in groups:.",
                "propertyNames": {"pattern": _SIMPLE_NAME},
                "additionalProperties": _ref("group"),
            },
            "clusters": {
                "type": "array",
                "minItems": 1,
                "items": _ref("cluster"),
                "description": "The clusters to work on.",
            },
            "rollout": {
                **_ref("rollout"),
                "description": "Waves, their order and when to stop (all optional).",
            },
        },
        "$defs": _defs(),
    }
