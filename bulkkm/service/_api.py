"""The HTTP API under ``/api/v1``: routes, their scopes, JSON in and out, and the access log.

Every route but ``/healthz``, the OpenAPI document and the web page's static files needs
``Authorization: Bearer TOKEN`` (``/metrics`` too: give the scraper a ``read`` token):
401 without a valid one, 403 when its scope does not allow the route (``ROUTES`` says which
scopes do). Errors are ``{"error": message}`` (and ``problems``: an inventory's lines as
``bulkkm validate`` prints them). The token is never logged: the access log names the
token's name, and a token once seen is known to the log scrubber, which masks it anywhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from importlib.metadata import version as _version
from pathlib import Path
from typing import Final

import orjson
import structlog
from aiohttp import web

from bulkkm.codec import timestamp
from bulkkm.secret import remember
from bulkkm.service._db import Database
from bulkkm.service._errors import BadRequest, Forbidden, NotFound, ServiceError, Unauthorized
from bulkkm.service._inventories import list_inventories
from bulkkm.service._metrics import CONTENT_TYPE, Metrics
from bulkkm.service._model import RunRecord, RunState, ScheduleFire, ScheduleRecord
from bulkkm.service._openapi import openapi_document
from bulkkm.service._runs import RunManager
from bulkkm.service._schedules import Scheduler
from bulkkm.service._sse import stream_events
from bulkkm.service._tokens import Principal, Scope, hash_token, same_hash

__all__ = ["PREFIX", "Api", "Route"]

PREFIX: Final = "/api/v1"
MAX_LIST: Final = 1000
log = structlog.get_logger("bulkkm.service")

PRINCIPAL: Final = web.RequestKey("principal", str)
"""The name of the token a request came with, for the access log."""
METRICS: Final = web.AppKey("metrics", Metrics)
STATIC: Final = Path(__file__).parent / "static"
"""The web page: plain HTML, CSS and one JavaScript module, served as they are."""
_PAGE_HEADERS: Final = {
    # The page runs only its own script and talks only to this service.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

Handler = Callable[[web.Request, Principal | None], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """One route: method, path, handler, and the scopes that may call it (none: anyone)."""

    method: str
    path: str
    handler: Handler
    scopes: tuple[Scope, ...]


def _json(body: object, status: int = 200) -> web.Response:
    """A JSON answer."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _error(status: int, message: str, problems: tuple[str, ...] = ()) -> web.Response:
    """An error answer."""
    body: dict[str, object] = {"error": message}
    if problems:
        body["problems"] = list(problems)
    response = _json(body, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="bulkkm"'
    return response


class Api:
    """The routes of one service."""

    def __init__(
        self, manager: RunManager, db: Database, scheduler: Scheduler | None = None
    ) -> None:
        """Serve ``manager``'s runs and ``scheduler``'s schedules; tokens from ``db``."""
        self._manager = manager
        self._db = db
        self._scheduler = scheduler
        read, operate, approve = (Scope.READ,), (Scope.OPERATE,), (Scope.APPROVE,)
        self.routes: tuple[Route, ...] = (
            Route(method="GET", path="/healthz", handler=self.healthz, scopes=()),
            Route(method="GET", path="/metrics", handler=self.metrics, scopes=read),
            Route(method="GET", path=f"{PREFIX}/openapi.json", handler=self.openapi, scopes=()),
            Route(
                method="GET", path=f"{PREFIX}/inventories", handler=self.inventories, scopes=read
            ),
            Route(method="GET", path=f"{PREFIX}/runs", handler=self.list_runs, scopes=read),
            Route(method="POST", path=f"{PREFIX}/runs", handler=self.create_run, scopes=operate),
            Route(method="GET", path=f"{PREFIX}/runs/{{id}}", handler=self.get_run, scopes=read),
            Route(
                method="GET", path=f"{PREFIX}/runs/{{id}}/report", handler=self.report, scopes=read
            ),
            Route(method="GET", path=f"{PREFIX}/runs/{{id}}/plan", handler=self.plan, scopes=read),
            Route(
                method="GET", path=f"{PREFIX}/runs/{{id}}/events", handler=self.events, scopes=read
            ),
            Route(
                method="POST",
                path=f"{PREFIX}/runs/{{id}}/approve",
                handler=self.approve,
                scopes=approve,
            ),
            Route(
                method="POST",
                path=f"{PREFIX}/runs/{{id}}/discard",
                handler=self.discard,
                scopes=(Scope.OPERATE, Scope.APPROVE),
            ),
            Route(
                method="POST",
                path=f"{PREFIX}/runs/{{id}}/cancel",
                handler=self.cancel,
                scopes=operate,
            ),
            Route(
                method="POST",
                path=f"{PREFIX}/runs/{{id}}/retry",
                handler=self.retry,
                scopes=operate,
            ),
            Route(
                method="GET", path=f"{PREFIX}/schedules", handler=self.list_schedules, scopes=read
            ),
            # An auto_approve schedule needs approve as well (checked in the handler).
            Route(
                method="POST",
                path=f"{PREFIX}/schedules",
                handler=self.create_schedule,
                scopes=operate,
            ),
            Route(
                method="GET",
                path=f"{PREFIX}/schedules/{{id}}",
                handler=self.get_schedule,
                scopes=read,
            ),
            Route(
                method="DELETE",
                path=f"{PREFIX}/schedules/{{id}}",
                handler=self.delete_schedule,
                scopes=operate,
            ),
            Route(method="GET", path=f"{PREFIX}/compliance", handler=self.compliance, scopes=read),
        )

    def install(self, app: web.Application) -> None:
        """Add every route (each behind its scope check), the page and the middleware."""
        app[METRICS] = self._manager.metrics
        app.middlewares.append(_middleware)
        for route in self.routes:
            app.router.add_route(route.method, route.path, self._guarded(route))
        app.router.add_get("/", _page)
        app.router.add_get("/static/{name}", _static)

    def _guarded(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The route's handler behind its token and scope check."""

        async def handle(request: web.Request) -> web.StreamResponse:
            principal = None
            if route.scopes:
                principal = await self._principal(request)
                request[PRINCIPAL] = principal.name
                if not any(principal.scope.allows(s) for s in route.scopes):
                    needed = " or ".join(s.value for s in route.scopes)
                    raise Forbidden(
                        f"token {principal.name!r} has scope {principal.scope}; this needs {needed}"
                    )
            return await route.handler(request, principal)

        return handle

    async def _principal(self, request: web.Request) -> Principal:
        """Who the bearer token is; Unauthorized without a valid one."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("a token is needed: Authorization: Bearer TOKEN")
        digest = hash_token(token)
        found = await self._db.principal(digest)
        if found is None or not same_hash(found[1], digest):
            raise Unauthorized("the token is not valid, or was revoked")
        remember(token)  # should it ever reach a log line, the scrubber masks it
        return found[0]

    # --- routes ----------------------------------------------------------------------

    async def healthz(self, _request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /healthz``: up, and not stopping."""
        status = 503 if self._manager.closing else 200
        return _json({"status": "stopping" if status == 503 else "ok"}, status)

    async def openapi(self, _request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /api/v1/openapi.json``."""
        return _json(openapi_document(_version("bulkkm")))

    async def inventories(self, _request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /inventories``: every file, validated."""
        infos = await asyncio.to_thread(list_inventories, self._manager.inventories_dir)
        return _json({"inventories": [dataclasses.asdict(i) for i in infos]})

    async def list_runs(self, request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /runs?state=&since=&limit=``: newest first."""
        states = _states(request.query.getall("state", []))
        since = _since(request.query.get("since"))
        limit = _limit(request.query.get("limit", "100"))
        records = await self._manager.list(states=states, since=since, limit=limit)
        return _json({"runs": [self._run_json(r, detail=False) for r in records]})

    async def create_run(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /runs {inventory, command, options}``: 201 and the run."""
        assert who is not None
        body = await _body(request, {"inventory", "command", "options"})
        options = body.get("options")
        options = {} if options is None else options  # [], "" or 0 is no object: refused
        if not isinstance(options, dict):
            raise BadRequest("options: an object is needed")
        record = await self._manager.create(
            inventory=body.get("inventory"), command=body.get("command"), options=options, by=who
        )
        return self._created(record)

    async def get_run(self, request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /runs/{id}``: the run, with its plan when it has one."""
        record = await self._manager.get(request.match_info["id"])
        return _json(self._run_json(record, detail=True))

    async def report(self, request: web.Request, _who: Principal | None) -> web.StreamResponse:
        """``GET /runs/{id}/report[?phase=plan]``: the JSON-lines report, as written."""
        record = await self._manager.get(request.match_info["id"])
        files = self._manager.files(record.id)
        phase = request.query.get("phase")
        if phase not in (None, "plan", "execute"):
            raise BadRequest("phase: plan or execute")
        candidates = {
            None: (files.report, files.plan_report),
            "plan": (files.plan_report,),
            "execute": (files.report,),
        }[phase]
        for path in candidates:
            if path.is_file() and path.stat().st_size > 0:
                return web.FileResponse(path, headers={"Content-Type": "application/x-ndjson"})
        raise NotFound("the run has no report yet")

    async def plan(self, request: web.Request, _who: Principal | None) -> web.StreamResponse:
        """``GET /runs/{id}/plan``: the plan file, byte for byte (its sha256 is ``plan_hash``)."""
        record = await self._manager.get(request.match_info["id"])
        path = self._manager.files(record.id).plan
        if record.plan_hash is None or not path.is_file():
            raise NotFound("the run has no plan")
        return web.FileResponse(path, headers={"Content-Type": "application/json"})

    async def events(self, request: web.Request, _who: Principal | None) -> web.StreamResponse:
        """``GET /runs/{id}/events``: server-sent events."""
        return await stream_events(request, self._manager, request.match_info["id"])

    async def approve(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /runs/{id}/approve {plan_hash, comment}``: 202, the run queued to execute."""
        assert who is not None
        body = await _body(request, {"plan_hash", "comment"})
        plan_hash, comment = body.get("plan_hash"), body.get("comment")
        if not isinstance(plan_hash, str) or not plan_hash:
            raise BadRequest("plan_hash: the run's plan_hash is needed (a string)")
        if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
            raise BadRequest("comment: a string of at most 2000 characters")
        record = await self._manager.approve(
            request.match_info["id"], plan_hash=plan_hash, comment=comment, by=who
        )
        return _json(self._run_json(record, detail=False), 202)

    async def discard(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /runs/{id}/discard``: a plan waiting for approval is dropped."""
        assert who is not None
        record = await self._manager.discard(request.match_info["id"], by=who)
        return _json(self._run_json(record, detail=False))

    async def cancel(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /runs/{id}/cancel``: 202; the run ends ``cancelled`` once in-flight work ends."""
        assert who is not None
        record = await self._manager.cancel(request.match_info["id"], by=who)
        return _json(self._run_json(record, detail=False), 202)

    async def retry(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /runs/{id}/retry``: 201 and a new run for what is left."""
        assert who is not None
        record = await self._manager.retry(request.match_info["id"], by=who)
        return self._created(record)

    async def metrics(self, _request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /metrics``: Prometheus's text format."""
        body = self._manager.metrics.render(await self._db.run_counts())
        response = web.Response(body=body)
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    async def list_schedules(self, _request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /schedules``: every schedule, with its next fire times."""
        scheduler = self._schedules()
        records = await scheduler.all()
        return _json({"schedules": [self._schedule_json(r) for r in records]})

    async def create_schedule(self, request: web.Request, who: Principal | None) -> web.Response:
        """``POST /schedules {inventory, command, cron, tz, auto_approve}``: 201."""
        assert who is not None
        body = await _body(request, {"inventory", "command", "cron", "tz", "auto_approve"})
        auto_approve = body.get("auto_approve", False)
        if auto_approve is True and not who.scope.allows(Scope.APPROVE):
            # A standing approval: whoever sets one must be allowed to approve as well.
            raise Forbidden(
                f"token {who.name!r} has scope {who.scope}; an auto_approve schedule approves "
                "its own plans, so it needs operate and approve (admin)"
            )
        record = await self._schedules().create(
            inventory=body.get("inventory"),
            command=body.get("command"),
            cron=body.get("cron"),
            tz=body.get("tz", "UTC"),
            auto_approve=auto_approve,
            by=who,
        )
        response = _json(self._schedule_json(record), 201)
        response.headers["Location"] = f"{PREFIX}/schedules/{record.id}"
        return response

    async def get_schedule(self, request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /schedules/{id}``: the schedule, its next 5 fire times, its latest fires."""
        scheduler = self._schedules()
        record = await scheduler.get(request.match_info["id"])
        body = self._schedule_json(record)
        body["fires"] = [_fire_json(f) for f in await scheduler.fires(record.id)]
        return _json(body)

    async def delete_schedule(self, request: web.Request, who: Principal | None) -> web.Response:
        """``DELETE /schedules/{id}``: 204; it fires no more."""
        assert who is not None
        await self._schedules().delete(request.match_info["id"], by=who)
        return web.Response(status=204)

    async def compliance(self, request: web.Request, _who: Principal | None) -> web.Response:
        """``GET /compliance[?state=drift]``: each key manager's state from the latest run."""
        wanted = {name for v in request.query.getall("state", []) for name in v.split(",") if name}
        known = {"compliant", "drift", "failed", "unknown"}
        if wanted - known:
            raise BadRequest(f"state: one of {', '.join(sorted(known))}")
        rows = await self._db.compliance()
        totals: dict[str, int] = dict.fromkeys(sorted(known), 0)
        for row in rows:
            totals[row.state.value] += 1
        return _json(
            {
                "totals": totals,
                "key_managers": [
                    {
                        "cluster": r.cluster,
                        "svm": r.svm,
                        "key_manager_uuid": r.key_manager_uuid,
                        "state": r.state.value,
                        "counts": dict(r.counts),
                        "detail": r.detail,
                        "run_id": r.run_id,
                        "command": r.command,
                        "seen_at": timestamp(r.seen_at),
                    }
                    for r in rows
                    if not wanted or r.state.value in wanted
                ],
            }
        )

    # --- shapes ----------------------------------------------------------------------

    def _schedules(self) -> Scheduler:
        """The scheduler (every service has one)."""
        assert self._scheduler is not None
        return self._scheduler

    def _schedule_json(self, record: ScheduleRecord) -> dict[str, object]:
        """A schedule as the API shows it."""
        return {
            "id": record.id,
            "inventory": record.inventory,
            "command": record.command,
            "cron": record.cron,
            "tz": record.tz,
            "auto_approve": record.auto_approve,
            "created_by": record.created_by,
            "created_at": _time(record.created_at),
            "next_fires": [timestamp(t) for t in self._schedules().upcoming(record)],
            "last_fire_at": _time(record.last_fire_at),
            "last_run_id": record.last_run_id,
            "missed_fires": record.missed_fires,
            "last_missed_at": _time(record.last_missed_at),
            "last_error": record.last_error,
            "links": {"self": f"{PREFIX}/schedules/{record.id}"},
        }

    def _created(self, record: RunRecord) -> web.Response:
        """201 with the run and where it lives."""
        response = _json(self._run_json(record, detail=False), 201)
        response.headers["Location"] = f"{PREFIX}/runs/{record.id}"
        return response

    def _run_json(self, record: RunRecord, *, detail: bool) -> dict[str, object]:
        """A run as the API shows it."""
        live = self._manager.live(record.id)
        counts = dict(live.counts) if live is not None else dict(record.counts)
        failed = live.clusters_failed if live is not None else record.clusters_failed
        base = f"{PREFIX}/runs/{record.id}"
        body: dict[str, object] = {
            "id": record.id,
            "state": record.state.value,
            "command": record.command,
            "inventory": record.inventory,
            "options": dict(record.options),
            "clusters": len(record.clusters),
            "counts": counts,
            "clusters_failed": failed,
            "exit_code": record.exit_code,
            "message": record.error,
            "plan_hash": record.plan_hash,
            "plan_expires_at": _time(record.plan_expires_at),
            "created_by": record.created_by,
            "approved_by": record.approved_by,
            "approval_comment": record.approval_comment,
            "ended_by": record.ended_by,
            "retry_of": record.retry_of,
            "auto_approve": record.auto_approve,
            "created_at": _time(record.created_at),
            "queued_at": _time(record.queued_at),
            "started_at": _time(record.started_at),
            "approved_at": _time(record.approved_at),
            "finished_at": _time(record.finished_at),
            "updated_at": _time(record.updated_at),
            "links": {
                "self": base,
                "report": f"{base}/report",
                "events": f"{base}/events",
                "plan": f"{base}/plan" if record.plan_hash is not None else None,
            },
        }
        if detail and record.plan_hash is not None:
            path = self._manager.files(record.id).plan
            body["plan"] = orjson.loads(path.read_bytes()) if path.is_file() else None
        return body


@web.middleware
async def _middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Errors as JSON; one access log line per request (the token's name, never the token).

    The time each API request took goes to the latency histogram, by route pattern (so a
    run's id never becomes a label); an event stream is timed until its headers are sent.
    """
    started = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ServiceError as exc:
        status = exc.status
        return _error(exc.status, str(exc), exc.problems)
    except web.HTTPException as exc:
        status = exc.status
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("http_internal_error", method=request.method, path=request.path)
        return _error(500, "internal error (see the service's log)")
    finally:
        took = time.monotonic() - started
        route = request.match_info.route.resource
        if route is not None and route.canonical.startswith(PREFIX):
            request.app[METRICS].api_seconds.labels(request.method, route.canonical).observe(took)
        log.info(
            "http_request",
            method=request.method,
            path=request.path,
            status=status,
            by=request.get(PRINCIPAL),
            duration_ms=round(took * 1000),
        )


async def _page(_request: web.Request) -> web.StreamResponse:
    """``GET /``: the web page."""
    return web.FileResponse(STATIC / "index.html", headers=_PAGE_HEADERS)


async def _static(request: web.Request) -> web.StreamResponse:
    """``GET /static/NAME``: one of the page's files (nothing below, nothing hidden)."""
    name = request.match_info["name"]
    path = STATIC / name
    if Path(name).name != name or name.startswith(".") or not path.is_file():
        raise NotFound(f"no file {name!r}")
    return web.FileResponse(path, headers=_PAGE_HEADERS)


def _fire_json(fire: ScheduleFire) -> dict[str, object]:
    """One recorded fire."""
    return {
        "fire_at": timestamp(fire.fire_at),
        "fired_at": timestamp(fire.fired_at),
        "missed": fire.missed,
        "run_id": fire.run_id,
        "error": fire.error,
    }


async def _body(request: web.Request, known: set[str]) -> Mapping[str, object]:
    """A JSON object body (an empty body is ``{}``); unknown fields refused by name."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
    return body


def _states(values: list[str]) -> tuple[RunState, ...]:
    """``?state=running&state=queued`` or ``?state=running,queued``."""
    names = [name for value in values for name in value.split(",") if name]
    try:
        return tuple(RunState(name) for name in names)
    except ValueError:
        known = ", ".join(s.value for s in RunState)
        raise BadRequest(f"state: one of {known}") from None


def _since(text: str | None) -> datetime | None:
    """``?since=`` as a time with its zone."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace(" ", "+"))  # a `+` in a query is a space
    except ValueError:
        raise BadRequest(f"since {text[:40]!r}: an ISO 8601 time is expected") from None
    if moment.tzinfo is None:
        raise BadRequest("since: give a time zone (Z or +01:00)")
    return moment


def _limit(text: str) -> int:
    """``?limit=`` from 1 to ``MAX_LIST``."""
    try:
        value = int(text)
    except ValueError:
        raise BadRequest("limit: a whole number") from None
    if not 1 <= value <= MAX_LIST:
        raise BadRequest(f"limit: from 1 to {MAX_LIST}")
    return value


def _time(moment: datetime | None) -> str | None:
    """A time as the API writes it (as the report does)."""
    return None if moment is None else timestamp(moment)
