"""``bulkkm serve``: runs over an HTTP API, approvals bound to a plan's hash, live events,
schedules, compliance, metrics and a web page.

The modules, in the order a request meets them: ``_app`` (the service put together, and
``serve``), ``_api`` (routes, scopes, JSON, the page's files), ``_sse`` (event streams),
``_runs`` (the run manager: states, queueing, cluster locks, the engine per run, cancel,
retry, recovery), ``_schedules`` (cron schedules and the scheduler task), ``_compliance``
(each key manager's state from run reports), ``_metrics`` (Prometheus), ``_journal`` (a
run's events on disk), ``_db`` (SQLite: runs, token hashes, schedules, compliance),
``_model`` (a run's states and record, a schedule's), ``_tokens`` (scopes and token
hashing), ``_inventories``, ``_config``, ``_openapi``, ``_errors``; ``static/`` is the page.
"""

from bulkkm.service._app import Service, create_token, list_tokens, revoke_token, serve
from bulkkm.service._config import ServiceConfig, parse_duration, parse_listen
from bulkkm.service._model import RunState
from bulkkm.service._tokens import Scope

__all__ = [
    "RunState",
    "Scope",
    "Service",
    "ServiceConfig",
    "create_token",
    "list_tokens",
    "parse_duration",
    "parse_listen",
    "revoke_token",
    "serve",
]
