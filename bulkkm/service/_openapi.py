"""The API's OpenAPI document, written by hand as data (a test checks it against the routes).

``x-scopes`` on each operation lists the token scopes that may call it (any one of them);
an operation without ``security`` needs no token.
"""

from __future__ import annotations

from typing import Final

__all__ = ["openapi_document"]

_STATES: Final = [
    "planning",
    "awaiting_approval",
    "queued",
    "running",
    "succeeded",
    "failed",
    "stopped",
    "cancelled",
    "discarded",
    "expired",
    "interrupted",
]
_ERROR: Final = {"$ref": "#/components/schemas/Error"}
_RUN: Final = {"$ref": "#/components/schemas/Run"}
_SCHEDULE: Final = {"$ref": "#/components/schemas/Schedule"}
_SCHEDULE_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The schedule's id.",
}
_ID: Final = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The run's id.",
}


def _answer(description: str, schema: object = None, media: str = "application/json") -> object:
    """One response."""
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {media: {"schema": schema}}}


def _errors(*codes: int) -> dict[str, object]:
    """The error responses an operation may give, besides 401 and 403."""
    text = {
        400: "A field or option is wrong (`error` names it).",
        404: "No such run, or it has no such file yet.",
        409: "The run's state, its plan's hash or its plan's age does not allow it.",
    }
    common = {
        "401": _answer("No valid bearer token.", _ERROR),
        "403": _answer("The token's scope does not allow this.", _ERROR),
    }
    return common | {str(c): _answer(text[c], _ERROR) for c in codes}


def _op(
    summary: str, scopes: list[str], responses: dict[str, object], **more: object
) -> dict[str, object]:
    """One operation that needs a token of one of ``scopes``."""
    return {
        "summary": summary,
        "security": [{"bearer": []}],
        "x-scopes": scopes,
        "responses": responses,
        **more,
    }


def openapi_document(version: str) -> dict[str, object]:
    """The whole document."""
    run_action = {"parameters": [_ID]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "bulkkm service",
            "version": version,
            "description": "Runs of bulkkm (plan, check, apply, migrate) over HTTP: an apply "
            "or a migrate plans first and executes exactly the approved plan. Runs never "
            "overlap on a cluster.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "problems": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "RunCreate": {
                    "type": "object",
                    "required": ["inventory", "command"],
                    "additionalProperties": False,
                    "properties": {
                        "inventory": {
                            "type": "string",
                            "description": "A file name from GET /inventories.",
                        },
                        "command": {"enum": ["plan", "check", "apply", "migrate"]},
                        "options": {"$ref": "#/components/schemas/Options"},
                    },
                },
                "Options": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "limit": {"type": "array", "items": {"type": "string"}},
                        "dry_run": {"type": "boolean"},
                        "max_failures": {"type": "integer", "minimum": 0},
                        "max_fail_percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "waves": {"type": "string", "examples": ["1,10%,100%"]},
                        "wave_order": {"type": "string"},
                        "pause_between_waves": {"type": "number", "minimum": 0},
                        "ignore_windows": {"type": "boolean"},
                        "verify_timeout": {"type": "number", "minimum": 0},
                        "verify_keys": {"type": "boolean"},
                    },
                },
                "Approve": {
                    "type": "object",
                    "required": ["plan_hash"],
                    "additionalProperties": False,
                    "properties": {
                        "plan_hash": {"type": "string", "description": "The run's plan_hash."},
                        "comment": {"type": "string", "maxLength": 2000},
                    },
                },
                "ScheduleCreate": {
                    "type": "object",
                    "required": ["inventory", "command", "cron"],
                    "additionalProperties": False,
                    "properties": {
                        "inventory": {"type": "string"},
                        "command": {"enum": ["check", "apply", "migrate"]},
                        "cron": {
                            "type": "string",
                            "description": "Five fields: minute hour day-of-month month "
                            "day-of-week.",
                            "examples": ["0 3 * * *"],
                        },
                        "tz": {"type": "string", "default": "UTC", "examples": ["Europe/Paris"]},
                        "auto_approve": {
                            "type": "boolean",
                            "default": False,
                            "description": "apply/migrate: the run approves its own plan. "
                            "Needs a token that may operate and approve (admin).",
                        },
                    },
                },
                "Schedule": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "inventory": {"type": "string"},
                        "command": {"enum": ["check", "apply", "migrate"]},
                        "cron": {"type": "string"},
                        "tz": {"type": "string"},
                        "auto_approve": {"type": "boolean"},
                        "created_by": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "next_fires": {
                            "type": "array",
                            "items": {"type": "string", "format": "date-time"},
                            "description": "The next 5 fire times, in UTC.",
                        },
                        "last_fire_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_run_id": {"type": ["string", "null"]},
                        "missed_fires": {"type": "integer"},
                        "last_missed_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_error": {"type": ["string", "null"]},
                        "fires": {
                            "type": "array",
                            "description": "GET /schedules/{id} only: the latest 20 fires.",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "fire_at": {"type": "string", "format": "date-time"},
                                    "fired_at": {"type": "string", "format": "date-time"},
                                    "missed": {"type": "boolean"},
                                    "run_id": {"type": ["string", "null"]},
                                    "error": {"type": ["string", "null"]},
                                },
                            },
                        },
                    },
                },
                "Compliance": {
                    "type": "object",
                    "properties": {
                        "totals": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "key_managers": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "cluster": {"type": "string"},
                                    "svm": {
                                        "type": ["string", "null"],
                                        "description": "null: the cluster's own key manager "
                                        "(or the whole cluster, never discovered).",
                                    },
                                    "key_manager_uuid": {"type": ["string", "null"]},
                                    "state": {"enum": ["compliant", "drift", "failed", "unknown"]},
                                    "counts": {"type": "object"},
                                    "detail": {"type": ["string", "null"]},
                                    "run_id": {"type": "string"},
                                    "command": {"type": "string"},
                                    "seen_at": {"type": "string", "format": "date-time"},
                                },
                            },
                        },
                    },
                },
                "Run": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "state": {"enum": _STATES},
                        "command": {"type": "string"},
                        "inventory": {"type": "string"},
                        "options": {"$ref": "#/components/schemas/Options"},
                        "clusters": {"type": "integer"},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "clusters_failed": {"type": "integer"},
                        "exit_code": {"type": ["integer", "null"]},
                        "message": {"type": ["string", "null"]},
                        "plan_hash": {"type": ["string", "null"]},
                        "plan_expires_at": {"type": ["string", "null"], "format": "date-time"},
                        "plan": {"type": ["object", "null"], "description": "GET /runs/{id} only."},
                        "created_by": {"type": "string"},
                        "approved_by": {"type": ["string", "null"]},
                        "approval_comment": {"type": ["string", "null"]},
                        "ended_by": {"type": ["string", "null"]},
                        "retry_of": {"type": ["string", "null"]},
                        "auto_approve": {"type": "boolean"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "queued_at": {"type": ["string", "null"], "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "approved_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "links": {"type": "object"},
                    },
                },
            },
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {"200": _answer("Up."), "503": _answer("Stopping.")},
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _answer("The document.")}}
            },
            "/api/v1/inventories": {
                "get": _op(
                    "The inventory files, each validated (errors as `bulkkm validate` prints them)",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The inventories.", {"type": "object"})} | _errors(),
                )
            },
            "/api/v1/runs": {
                "get": _op(
                    "Runs, newest first",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The runs.", {"type": "object"})} | _errors(400),
                    parameters=[
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "States, comma-separated or repeated.",
                        },
                        {
                            "name": "since",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                ),
                "post": _op(
                    "Start a run (an apply or a migrate plans, then awaits approval)",
                    ["operate", "admin"],
                    {"201": _answer("The run, queued.", _RUN)} | _errors(400),
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/RunCreate"}
                            }
                        },
                    },
                ),
            },
            "/api/v1/runs/{id}": {
                "get": _op(
                    "A run, with its plan",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The run.", _RUN)} | _errors(404),
                    **run_action,
                )
            },
            "/api/v1/runs/{id}/report": {
                "get": _op(
                    "The run's JSON-lines report, as the CLI writes it",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The report.", {"type": "string"}, "application/x-ndjson")}
                    | _errors(400, 404),
                    parameters=[
                        _ID,
                        {"name": "phase", "in": "query", "schema": {"enum": ["plan", "execute"]}},
                    ],
                )
            },
            "/api/v1/runs/{id}/plan": {
                "get": _op(
                    "The plan file, byte for byte (its sha256 is plan_hash)",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The plan.", {"type": "object"})} | _errors(404),
                    **run_action,
                )
            },
            "/api/v1/runs/{id}/events": {
                "get": _op(
                    "Server-sent events, one per engine event; resume with Last-Event-ID",
                    ["read", "operate", "approve", "admin"],
                    {
                        "200": _answer(
                            "The stream; `event: end` closes it.",
                            {"type": "string"},
                            "text/event-stream",
                        ),
                        "204": _answer("The run is over and every event was sent."),
                    }
                    | _errors(400, 404),
                    parameters=[
                        _ID,
                        {"name": "cluster", "in": "query", "schema": {"type": "string"}},
                        {"name": "Last-Event-ID", "in": "header", "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/v1/runs/{id}/approve": {
                "post": _op(
                    "Approve exactly the run's plan",
                    ["approve", "admin"],
                    {"202": _answer("Queued to execute the plan.", _RUN)} | _errors(400, 404, 409),
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Approve"}}
                        },
                    },
                    **run_action,
                )
            },
            "/api/v1/runs/{id}/discard": {
                "post": _op(
                    "Drop a plan awaiting approval",
                    ["operate", "approve", "admin"],
                    {"200": _answer("Discarded.", _RUN)} | _errors(404, 409),
                    **run_action,
                )
            },
            "/api/v1/runs/{id}/cancel": {
                "post": _op(
                    "Stop a run as Ctrl-C does",
                    ["operate", "admin"],
                    {"202": _answer("Stopping (or cancelled if queued).", _RUN)}
                    | _errors(404, 409),
                    **run_action,
                )
            },
            "/api/v1/runs/{id}/retry": {
                "post": _op(
                    "A new run for what this one left undone",
                    ["operate", "admin"],
                    {"201": _answer("The new run.", _RUN)} | _errors(400, 404, 409),
                    **run_action,
                )
            },
            "/api/v1/schedules": {
                "get": _op(
                    "Every schedule, with its next 5 fire times",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The schedules.", {"type": "object"})} | _errors(),
                ),
                "post": _op(
                    "Create a schedule (auto_approve needs approve as well: admin)",
                    ["operate", "admin"],
                    {"201": _answer("The schedule.", _SCHEDULE)} | _errors(400),
                    requestBody={
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ScheduleCreate"}
                            }
                        },
                    },
                ),
            },
            "/api/v1/schedules/{id}": {
                "get": _op(
                    "A schedule, its next 5 fire times and its latest fires",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The schedule.", _SCHEDULE)} | _errors(404),
                    parameters=[_SCHEDULE_ID],
                ),
                "delete": _op(
                    "Delete a schedule (its runs and fire records stay)",
                    ["operate", "admin"],
                    {"204": _answer("Deleted.")} | _errors(404),
                    parameters=[_SCHEDULE_ID],
                ),
            },
            "/api/v1/compliance": {
                "get": _op(
                    "Each key manager's state from the latest run that saw it",
                    ["read", "operate", "approve", "admin"],
                    {
                        "200": _answer(
                            "Totals and rows.", {"$ref": "#/components/schemas/Compliance"}
                        )
                    }
                    | _errors(400),
                    parameters=[
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {"type": "string"},
                            "description": "compliant, drift, failed or unknown (comma list).",
                        }
                    ],
                )
            },
            "/metrics": {
                "get": _op(
                    "Prometheus metrics: runs by state, targets by outcome, target durations "
                    "per cluster group, retries by code, API latency",
                    ["read", "operate", "approve", "admin"],
                    {"200": _answer("The text format.", {"type": "string"}, "text/plain")}
                    | _errors(),
                )
            },
        },
    }
