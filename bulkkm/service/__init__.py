"""``bulkkm serve``: runs over an HTTP API, approvals bound to a plan's hash, live events.

The modules, in the order a request meets them: ``_app`` (the service put together, and
``serve``), ``_api`` (routes, scopes, JSON), ``_sse`` (event streams), ``_runs`` (the run
manager: states, queueing, cluster locks, the engine per run, cancel, retry, recovery),
``_journal`` (a run's events on disk), ``_db`` (SQLite: runs and token hashes), ``_model``
(a run's states and record), ``_tokens`` (scopes and token hashing), ``_inventories``,
``_config``, ``_openapi``, ``_errors``.
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
