"""The run manager: creates runs, queues them until their clusters are free, runs the engine
for each (plan, approval, execution), cancels, retries, and recovers after a crash.

Every state change goes through the database under one lock, so two requests cannot both
move one run. A run holds its clusters (by address, so two inventories naming one cluster
differently still never overlap) while ``planning`` or ``running``; queued runs start in the
order they were queued, and a run never starts ahead of an earlier one waiting for one of
its clusters, so none starves. The engine runs in this process, through
``bulkkm.runner.run_headless``, with the report, the run's event journal and a live counter
as subscribers: all sync and quick, none of them waits on a client or the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final, TypeVar, cast

import structlog

from bulkkm import loop as loops
from bulkkm.codec import timestamp
from bulkkm.engine import RunControl
from bulkkm.errors import BulkkmError, InventoryError
from bulkkm.events import (
    ClusterResult,
    Event,
    Outcome,
    RunFinished,
    Subscriber,
    TargetResult,
    TargetsKnown,
)
from bulkkm.logs import printable
from bulkkm.planfile import read_plan
from bulkkm.report import read_lines
from bulkkm.request import COMMANDS, PreparedRun, RunRequest, prepare
from bulkkm.runner import EXIT_INTERRUPTED, run_headless
from bulkkm.service._compliance import observe_report
from bulkkm.service._config import ServiceConfig
from bulkkm.service._db import Database
from bulkkm.service._errors import BadRequest, Conflict, NotFound
from bulkkm.service._inventories import inventory_path
from bulkkm.service._journal import Journal
from bulkkm.service._metrics import Metrics
from bulkkm.service._model import ACTIVE, RETRYABLE, TERMINAL, Phase, RunRecord, RunState
from bulkkm.service._tokens import Principal, Scope, same_hash

__all__ = ["OPTIONS", "LiveCounts", "RunFiles", "RunManager"]

OPTIONS: Final = frozenset(
    {
        "limit",
        "dry_run",
        "max_failures",
        "max_fail_percent",
        "waves",
        "wave_order",
        "pause_between_waves",
        "ignore_windows",
        "verify_timeout",
        "verify_keys",
    }
)
"""The ``RunRequest`` fields a client may set; the service sets the paths itself."""
_RANGES: Final = {
    "max_failures": (0, None),
    "max_fail_percent": (0, 100),
    "pause_between_waves": (0, None),
    "verify_timeout": (0, None),
}
SHUTDOWN_GRACE: Final = 15.0
"""Seconds runs get to wind down (in-flight requests finish) when the service stops."""
_MANY: Final = 1_000_000

log = structlog.get_logger("bulkkm.service")


@dataclasses.dataclass(frozen=True, slots=True)
class RunFiles:
    """A run's folder in the data directory and the files in it."""

    folder: Path

    @property
    def plan_report(self) -> Path:
        """The report of an apply's planning."""
        return self.folder / "plan-report.jsonl"

    @property
    def plan(self) -> Path:
        """The plan file (``plan --out``): what an approval executes."""
        return self.folder / "plan.json"

    @property
    def report(self) -> Path:
        """The run's report (an apply's: of the approved execution)."""
        return self.folder / "report.jsonl"

    @property
    def events(self) -> Path:
        """Every engine event of the run, one JSON line each."""
        return self.folder / "events.jsonl"


T = TypeVar("T")


class LiveCounts:
    """A sync subscriber: outcomes so far, for ``GET /runs/{id}`` while the run runs."""

    def __init__(self) -> None:
        """Nothing counted yet."""
        self.counts: Counter[str] = Counter()
        self.clusters_failed = 0

    def __call__(self, event: Event) -> None:
        """Count an outcome."""
        match event:
            case TargetResult():
                self.counts[event.outcome.value] += 1
            case ClusterResult(outcome=Outcome.FAILED):
                self.clusters_failed += 1
            case TargetsKnown() | _:
                pass


async def on_its_own_loop(work: Coroutine[object, object, T], control: RunControl) -> T:
    """Run an engine run's coroutine on a loop of its own, in a thread of its own.

    The engine's CPU work (TLS handshakes, JSON, events) then no longer holds up the API:
    the two threads share the interpreter, which switches between them every few
    milliseconds, where on one loop a request waited for a whole turn of the engine's work
    (seconds in a large run). If the service stops while it runs, the engine is interrupted
    and awaited: when this returns or raises, the run's report and journal are complete.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()  # the run's log context goes along

    def settle(result: T | None, error: BaseException | None) -> None:
        if not done.done():
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(cast(T, result))

    def thread() -> None:
        try:
            result = context.run(loops.run, work)
        except BaseException as exc:  # handed to the awaiting task, whatever it is
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, None, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=thread, name="bulkkm-engine", daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        control.interrupt()
        with contextlib.suppress(Exception):
            await done
        raise


class _Active:
    """A run whose engine works now."""

    __slots__ = ("cancelled_by", "control", "live", "locks", "task")

    def __init__(self, locks: tuple[str, ...]) -> None:
        """Holding ``locks``; the task is set once started."""
        self.locks = locks
        self.control = RunControl()
        self.live = LiveCounts()
        self.cancelled_by: str | None = None
        self.task: asyncio.Task[None] | None = None


class _Changes:
    """Wakes whoever waits on one run: a new event, or a new state."""

    __slots__ = ("current",)

    def __init__(self) -> None:
        """Nobody woken yet."""
        self.current = asyncio.Event()

    def fire(self) -> None:
        """Wake the waiters; later waiters wait for the next change."""
        fired, self.current = self.current, asyncio.Event()
        fired.set()


class RunManager:
    """Every run of one service."""

    def __init__(self, db: Database, config: ServiceConfig, metrics: Metrics | None = None) -> None:
        """Nothing runs until ``start``."""
        self._db = db
        self._config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self._lock = asyncio.Lock()
        self._active: dict[str, _Active] = {}
        self._changes: dict[str, _Changes] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.closing = False

    # --- life ------------------------------------------------------------------------

    async def start(self) -> None:
        """Recover from the last stop, expire old plans, start what is queued."""
        now = self._config.clock()
        for record in await self._db.runs(states=ACTIVE, limit=_MANY):
            files = self.files(record.id)
            report = files.report if record.phase is Phase.EXECUTE else files.plan_report
            counts, failed = _counts_of(report)
            await self._db.save_run(
                dataclasses.replace(
                    record,
                    state=RunState.INTERRUPTED,
                    updated_at=now,
                    finished_at=now,
                    counts=counts,
                    clusters_failed=failed,
                    error=f"the service stopped while the run was {record.state}",
                )
            )
            log.warning("run_interrupted", run=record.id, was=record.state.value)
        await self._expire_due()
        for record in await self._db.runs(states=(RunState.AWAITING_APPROVAL,), limit=_MANY):
            if record.auto_approve:  # the service stopped between its plan and its approval
                await self._approve_own_plan(record.id)
        await self._schedule()
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        """Stop: active runs are interrupted (in-flight requests finish) and end interrupted."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = [a.task for a in self._active.values() if a.task is not None]
        for active in self._active.values():
            active.control.interrupt()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for changes in self._changes.values():
            changes.fire()

    # --- what clients ask --------------------------------------------------------------

    async def create(
        self,
        *,
        inventory: object,
        command: object,
        options: Mapping[str, object],
        by: Principal,
        retry_of: str | None = None,
        resume: str | None = None,
        auto_approve: bool = False,
    ) -> RunRecord:
        """A new run, checked as ``prepare`` checks a command line, then queued.

        ``auto_approve``: once planned, the run approves its own plan (a schedule's choice).
        """
        if self.closing:
            raise Conflict("the service is stopping")
        if not isinstance(command, str) or command not in COMMANDS:
            raise BadRequest(f"command: one of {', '.join(sorted(COMMANDS))}")
        path = inventory_path(self._config.inventories_dir, inventory)
        assert isinstance(inventory, str)
        options = _options(options)
        request = _request(
            {"command": command, "inventory": str(path), **options, "resume": resume}
        )
        checked = await asyncio.to_thread(_check, request)
        now = self._config.clock()
        clusters = tuple((c.name, c.address) for c in checked.clusters.clusters)
        record = RunRecord(
            id=str(uuid.uuid4()),
            command=command,
            inventory=inventory,
            options=options,
            state=RunState.QUEUED,
            phase=Phase.EXECUTE,
            clusters=clusters,
            locks=tuple(sorted({address for _, address in clusters})),
            created_by=by.name,
            created_at=now,
            updated_at=now,
            queued_at=now,
            retry_of=retry_of,
            resume=resume,
            auto_approve=auto_approve,
        )
        if record.needs_approval:
            record = dataclasses.replace(record, phase=Phase.PLAN)
        self.files(record.id).folder.mkdir(parents=True, mode=0o700)
        await self._db.save_run(record)
        log.info(
            "run_created",
            run=record.id,
            command=command,
            inventory=inventory,
            by=by.name,
            retry_of=retry_of,
        )
        await self._schedule()
        return await self.get(record.id)

    async def check_inventory(self, inventory: object) -> None:
        """BadRequest unless ``inventory`` names a valid inventory (as a run would check it)."""
        path = inventory_path(self._config.inventories_dir, inventory)
        await asyncio.to_thread(_check, _request({"command": "check", "inventory": str(path)}))

    async def approve(
        self, run_id: str, *, plan_hash: str, comment: str | None, by: Principal
    ) -> RunRecord:
        """Approve exactly the run's plan: queued to execute it; Conflict otherwise."""
        record = await self.get(run_id)
        saved = None
        if record.state is RunState.AWAITING_APPROVAL:
            saved = await asyncio.to_thread(read_plan, self.files(run_id).plan)
        async with self._lock:
            record = await self.get(run_id)
            now = self._config.clock()
            if record.state is not RunState.AWAITING_APPROVAL or saved is None:
                raise Conflict(f"the run is {record.state}, not awaiting_approval")
            if record.plan_expires_at is not None and now >= record.plan_expires_at:
                await self._save(
                    dataclasses.replace(record, state=RunState.EXPIRED, finished_at=now), now
                )
                raise Conflict(
                    f"the plan expired at {timestamp(record.plan_expires_at)}: "
                    "create a new run to plan again"
                )
            if record.plan_hash is None or not same_hash(plan_hash, record.plan_hash):
                raise Conflict("plan_hash is not this run's plan: read the run again, review")
            changed = set(saved.changed_clusters)
            locks = {address for name, address in record.clusters if name in changed}
            if not locks:  # a plan that names no change still holds what it may contact
                locks = set(record.locks)
            await self._save(
                dataclasses.replace(
                    record,
                    state=RunState.QUEUED,
                    queued_at=now,
                    approved_by=by.name,
                    approved_at=now,
                    approval_comment=comment,
                    locks=tuple(sorted(locks)),
                ),
                now,
            )
        log.info("run_approved", run=run_id, by=by.name, plan_hash=plan_hash)
        await self._schedule()
        return await self.get(run_id)

    async def discard(self, run_id: str, *, by: Principal) -> RunRecord:
        """Drop a plan waiting for approval."""
        async with self._lock:
            record = await self.get(run_id)
            if record.state is not RunState.AWAITING_APPROVAL:
                raise Conflict(f"the run is {record.state}: only awaiting_approval is discarded")
            now = self._config.clock()
            await self._save(
                dataclasses.replace(
                    record, state=RunState.DISCARDED, finished_at=now, ended_by=by.name
                ),
                now,
            )
        log.info("run_discarded", run=run_id, by=by.name)
        return await self.get(run_id)

    async def cancel(self, run_id: str, *, by: Principal) -> RunRecord:
        """Stop a run as Ctrl-C does (in-flight requests finish); a queued one at once."""
        async with self._lock:
            record = await self.get(run_id)
            now = self._config.clock()
            if record.state is RunState.QUEUED and run_id not in self._active:
                await self._save(
                    dataclasses.replace(
                        record, state=RunState.CANCELLED, finished_at=now, ended_by=by.name
                    ),
                    now,
                )
            elif record.state in ACTIVE and run_id in self._active:
                active = self._active[run_id]
                active.cancelled_by = by.name
                active.control.interrupt()
            else:
                hint = " (discard it)" if record.state is RunState.AWAITING_APPROVAL else ""
                raise Conflict(
                    f"the run is {record.state}: only queued, planning or running runs "
                    f"are cancelled{hint}"
                )
        log.info("run_cancel", run=run_id, by=by.name)
        return await self.get(run_id)

    async def retry(self, run_id: str, *, by: Principal) -> RunRecord:
        """A new run for what this one left undone, resuming from its report."""
        record = await self.get(run_id)
        if record.state not in RETRYABLE:
            raise Conflict(
                f"the run is {record.state}: only failed, stopped, cancelled or interrupted "
                "runs are retried"
            )
        resume = record.resume
        report = self.files(run_id).report
        if record.needs_approval or record.command in ("apply", "migrate"):
            if report.exists() and report.stat().st_size > 0:
                resume = str(report)
        else:
            resume = None  # a plan or a check reads everything again
        return await self.create(
            inventory=record.inventory,
            command=record.command,
            options=record.options,
            by=by,
            retry_of=run_id,
            resume=resume,
            auto_approve=record.auto_approve,
        )

    async def get(self, run_id: str) -> RunRecord:
        """A run; NotFound when there is none."""
        record = await self._db.run(run_id)
        if record is None:
            raise NotFound(f"no run {run_id!r}")
        return record

    async def list(
        self, *, states: tuple[RunState, ...], since: datetime | None, limit: int
    ) -> list[RunRecord]:
        """Runs, newest first."""
        return await self._db.runs(states=states, since=since, limit=limit)

    def live(self, run_id: str) -> LiveCounts | None:
        """The counts of a run working now."""
        active = self._active.get(run_id)
        return None if active is None else active.live

    @property
    def inventories_dir(self) -> Path:
        """Where the inventories runs may name are."""
        return self._config.inventories_dir

    def files(self, run_id: str) -> RunFiles:
        """Where a run's files are."""
        return RunFiles(self._config.runs_dir / run_id)

    def waiter(self, run_id: str) -> asyncio.Event:
        """Set at the run's next event or state change."""
        return self._changes.setdefault(run_id, _Changes()).current

    def finished_with(self, run_id: str) -> None:
        """A watcher leaves a run that has ended: nothing wakes it any more, so the entry
        ``waiter`` made for it goes (the runs' end drops it too, but a stream opened on a
        finished run would leave one behind each)."""
        self._changes.pop(run_id, None)

    # --- inside ----------------------------------------------------------------------

    async def _save(self, record: RunRecord, now: datetime) -> None:
        """Write a run's new state and wake its watchers (the caller holds the lock)."""
        record = dataclasses.replace(record, updated_at=now)
        await self._db.save_run(record)
        log.info("run_state", run=record.id, state=record.state.value, command=record.command)
        self._wake(record.id)
        if record.state in TERMINAL:
            self._changes.pop(record.id, None)

    def _waker(self, run_id: str) -> Callable[[], None]:
        """``_wake`` for the run's journal, called on the engine's thread: handed to this
        loop, at most one at a time (the woken read every line written by then)."""
        loop = asyncio.get_running_loop()
        pending = False

        def woken() -> None:
            nonlocal pending
            pending = False
            self._wake(run_id)

        def wake() -> None:
            nonlocal pending
            if not pending:
                pending = True
                with contextlib.suppress(RuntimeError):  # the service's loop has closed
                    loop.call_soon_threadsafe(woken)

        return wake

    def _wake(self, run_id: str) -> None:
        """Wake whoever watches a run."""
        changes = self._changes.get(run_id)
        if changes is not None:
            changes.fire()

    async def _schedule(self) -> None:
        """Start every queued run whose clusters are free, oldest first, none overtaking."""
        async with self._lock:
            if self.closing:
                return
            held = {address for a in self._active.values() for address in a.locks}
            wanted: set[str] = set()
            for record in await self._db.runs(
                states=(RunState.QUEUED,), limit=_MANY, oldest_first=True
            ):
                locks = set(record.locks)
                if locks & (held | wanted):
                    wanted |= locks  # later runs must not take what this one waits for
                    continue
                held |= locks
                await self._start(record)

    async def _start(self, record: RunRecord) -> None:
        """Move a run to planning or running and start its engine (the lock is held)."""
        now = self._config.clock()
        state = RunState.PLANNING if record.phase is Phase.PLAN else RunState.RUNNING
        record = dataclasses.replace(record, state=state, started_at=record.started_at or now)
        active = _Active(record.locks)
        self._active[record.id] = active
        await self._save(record, now)
        active.task = asyncio.create_task(self._execute(record, active), name=f"run-{record.id}")

    async def _execute(self, record: RunRecord, active: _Active) -> None:
        """One engine run of a service run, and the state it leaves the run in."""
        with structlog.contextvars.bound_contextvars(service_run=record.id):
            try:
                await self._engine(record, active)
            except asyncio.CancelledError:
                await self._end(record, RunState.INTERRUPTED, error="the service stopped")
                raise
            except Exception as exc:  # a bug: this run fails, the service goes on
                log.exception("run_crashed", run=record.id)
                await self._end(record, RunState.FAILED, error=f"internal error: {exc!r}")
            finally:
                if self._active.get(record.id) is active:  # not a later phase's, started since
                    del self._active[record.id]
                self._wake(record.id)
        await self._schedule()

    async def _engine(self, record: RunRecord, active: _Active) -> None:
        """Prepare and run the engine for the run's phase."""
        files = self.files(record.id)
        try:
            if record.phase is Phase.EXECUTE and record.needs_approval:
                _check_plan(files.plan, record.plan_hash)
            request = self._request_for(record)
            prepared = await asyncio.to_thread(prepare, request)
        except BulkkmError as exc:
            await self._end(record, RunState.FAILED, error=printable(str(exc)))
            return
        try:
            journal = Journal.open(files.events, self._waker(record.id))
        except OSError as exc:
            if prepared.report is not None:
                prepared.report.close()
            await self._end(record, RunState.FAILED, error=f"the events file: {exc.strerror}")
            return
        writer = prepared.plan_writer
        groups = {c.name: c.groups[0] if c.groups else "none" for c in prepared.clusters.clusters}
        counter = self.metrics.subscriber(record.command, groups)
        extra: list[Subscriber] = [journal, active.live, counter]
        if writer is not None:
            extra.append(writer)
        try:
            summary = await on_its_own_loop(
                run_headless(
                    prepared.clusters,
                    prepared.options,
                    report=prepared.report,
                    extra=extra,
                    control=active.control,
                ),
                active.control,
            )
        finally:
            journal.close()
            if writer is not None and not writer.written:
                writer.file.close()
        await self._observe(record)
        await self._finished(record, active, prepared, summary)

    async def _observe(self, record: RunRecord) -> None:
        """Compliance from the report the engine run just closed (never fails the run)."""
        files = self.files(record.id)
        planning = record.phase is Phase.PLAN
        try:
            seen = await asyncio.to_thread(
                observe_report,
                files.plan_report if planning else files.report,
                run_id=record.id,
                command=f"{record.command} (plan)" if planning else record.command,
                at=self._config.clock(),
            )
            await self._db.update_compliance(seen)
        except Exception:
            log.exception("compliance_update_failed", run=record.id)

    async def _finished(
        self, record: RunRecord, active: _Active, prepared: PreparedRun, summary: RunFinished
    ) -> None:
        """The run's state after an engine run."""
        files = self.files(record.id)
        changes: dict[str, object] = {
            "counts": dict(summary.counts),
            "clusters_failed": summary.clusters_failed,
        }
        written = prepared.plan_writer is not None and prepared.plan_writer.written
        if summary.exit_code == EXIT_INTERRUPTED:
            if active.cancelled_by is not None:
                state, changes["ended_by"] = RunState.CANCELLED, active.cancelled_by
            else:
                state = RunState.INTERRUPTED
                changes["error"] = "the service stopped while the run ran"
            changes["exit_code"] = summary.exit_code
        elif record.phase is Phase.PLAN:
            if not written:
                await self._end(record, RunState.FAILED, error="the plan could not be written")
                return
            data = files.plan.read_bytes()
            saved = read_plan(files.plan)
            if saved.additions == 0 and record.command == "apply":
                state = RunState.SUCCEEDED if summary.exit_code == 0 else RunState.FAILED
                changes |= {"exit_code": summary.exit_code, "error": "nothing to add"}
            else:
                now = self._config.clock()
                state = RunState.AWAITING_APPROVAL
                changes |= {
                    "phase": Phase.EXECUTE,
                    "plan_hash": hashlib.sha256(data).hexdigest(),
                    "plan_expires_at": now + timedelta(seconds=self._config.plan_ttl),
                }
        else:
            state = _STATE_OF_EXIT.get(summary.exit_code, RunState.FAILED)
            changes["exit_code"] = summary.exit_code
            if record.needs_approval:
                state = _with_what_the_plan_left(record, state, changes)
            if written:
                changes["plan_hash"] = hashlib.sha256(files.plan.read_bytes()).hexdigest()
        await self._end(record, state, **changes)
        if state is RunState.AWAITING_APPROVAL and record.auto_approve:
            await self._approve_own_plan(record.id)

    async def _approve_own_plan(self, run_id: str) -> None:
        """An ``auto_approve`` run approves the plan it made, by its hash, as its creator."""
        record = await self.get(run_id)
        if record.plan_hash is None:
            return
        by = Principal(name=record.created_by, scope=Scope.APPROVE)
        try:
            await self.approve(
                run_id, plan_hash=record.plan_hash, comment="auto_approve (schedule)", by=by
            )
        except Conflict as exc:  # expired, or someone discarded it meanwhile
            log.warning("auto_approve_refused", run=run_id, reason=str(exc))

    async def _end(self, record: RunRecord, state: RunState, **changes: object) -> None:
        """Leave planning/running for ``state`` (the record as the database has it now)."""
        async with self._lock:
            current = await self.get(record.id)
            now = self._config.clock()
            finished = now if state in TERMINAL else None
            new = dataclasses.replace(current, state=state, finished_at=finished, **changes)  # type: ignore[arg-type]
            await self._save(new, now)

    def _request_for(self, record: RunRecord) -> RunRequest:
        """The engine run a phase needs, with the run's own files as outputs."""
        files = self.files(record.id)
        inventory = str(inventory_path(self._config.inventories_dir, record.inventory))
        if record.phase is Phase.PLAN:
            body: dict[str, object] = {
                "command": "plan",
                "inventory": inventory,
                "limit": record.options.get("limit", []),
                "out": str(files.plan),
                "report": str(files.plan_report),
            }
        else:
            body = {
                "command": record.command,
                "inventory": inventory,
                **record.options,
                "report": str(files.report),
                "resume": record.resume,
            }
            if record.needs_approval:
                body["plan"] = str(files.plan)
            elif record.command == "plan":
                body["out"] = str(files.plan)
        return _request({**body, "overwrite": True})

    async def _expire_due(self) -> None:
        """Expire plans whose time to be approved has passed."""
        now = self._config.clock()
        waiting = await self._db.runs(states=(RunState.AWAITING_APPROVAL,), limit=_MANY)
        for record in waiting:
            if record.plan_expires_at is not None and now >= record.plan_expires_at:
                async with self._lock:
                    current = await self.get(record.id)
                    if current.state is RunState.AWAITING_APPROVAL:
                        await self._save(
                            dataclasses.replace(current, state=RunState.EXPIRED, finished_at=now),
                            now,
                        )

    async def _sweep(self) -> None:
        """Expire old plans now and then."""
        while True:
            await asyncio.sleep(self._config.expiry_interval)
            try:
                await self._expire_due()
            except Exception:
                log.exception("expiry_failed")


_STATE_OF_EXIT: Final = {
    0: RunState.SUCCEEDED,
    4: RunState.SUCCEEDED,  # a check that found drift did its job: the counts say what
    1: RunState.FAILED,
    3: RunState.STOPPED,
}


def _with_what_the_plan_left(
    record: RunRecord, state: RunState, changes: dict[str, object]
) -> RunState:
    """An approved execution's state, counting what its plan left out (``changes`` updated).

    The execution does exactly the plan, so the plan's blocked targets and the clusters it
    could not discover never reach its report; ``record`` still holds the plan's counts. The
    run as a whole did not do the job then: failed, exit 1, as ``bulkkm apply`` would end.
    """
    blocked = record.counts.get("blocked", 0)
    unreached = record.clusters_failed
    if not blocked and not unreached:
        return state
    counts = Counter(cast("dict[str, int]", changes["counts"]))
    counts["blocked"] += blocked
    changes["counts"] = dict(counts)
    changes["clusters_failed"] = cast(int, changes["clusters_failed"]) + unreached
    left = []
    if unreached:
        left.append(f"{unreached} cluster(s) it could not discover")
    if blocked:
        left.append(f"{blocked} target(s) it blocked")
    note = (
        f"the plan left {' and '.join(left)}: the approved change did not touch them "
        f"(see the plan's report: GET /api/v1/runs/{record.id}/report?phase=plan)"
    )
    if state is not RunState.SUCCEEDED:
        changes["error"] = note
        return state
    changes |= {"exit_code": 1, "error": note}
    return RunState.FAILED


def _options(options: Mapping[str, object]) -> dict[str, object]:
    """The client's options, unknown ones and values out of range refused by name."""
    if not isinstance(options, Mapping):
        raise BadRequest("options: an object is needed")
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise BadRequest(
            f"options: unknown field {unknown[0]!r} (known: {', '.join(sorted(OPTIONS))})"
        )
    checked = dict(options)
    if isinstance(checked.get("limit"), str):
        checked["limit"] = [checked["limit"]]
    for name, (low, high) in _RANGES.items():
        value = checked.get(name)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and (value < low or (high is not None and value > high)):  # type: ignore[operator]
            bound = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise BadRequest(f"options: {name} must be {bound}")
    if checked.get("confirm_waves"):
        raise BadRequest("options: confirm_waves needs a terminal; the service approves plans")
    return checked


def _request(body: Mapping[str, object]) -> RunRequest:
    """A run request from JSON; BadRequest naming the field that is wrong."""
    try:
        return RunRequest.from_json({k: v for k, v in body.items() if v is not None})
    except BulkkmError as exc:
        raise BadRequest(str(exc).removeprefix("run request: ")) from None


def _check(request: RunRequest) -> PreparedRun:
    """``prepare`` without outputs: everything checked, nothing opened (blocking)."""
    try:
        return prepare(request)
    except InventoryError as exc:
        problems = tuple(printable(str(p)) for p in exc.problems)
        raise BadRequest(
            f"the inventory has {len(problems)} problem(s); nothing was started",
            problems=problems,
        ) from None
    except BulkkmError as exc:
        raise BadRequest(printable(str(exc))) from None


def _check_plan(path: Path, plan_hash: str | None) -> None:
    """Refuse to execute a plan file that is not the one approved."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BulkkmError(f"the approved plan cannot be read: {exc.strerror}") from None
    if hashlib.sha256(data).hexdigest() != plan_hash:
        raise BulkkmError("the plan file changed after it was approved; nothing was sent")


def _counts_of(report: Path) -> tuple[dict[str, int], int]:
    """Outcomes and failed clusters in a report cut by a crash (none when there is none)."""
    counts: Counter[str] = Counter()
    failed = 0
    with contextlib.suppress(BulkkmError):
        for line in read_lines(report):
            if line["type"] == "target":
                counts[str(line["outcome"])] += 1
            elif line["type"] == "cluster" and line["outcome"] == Outcome.FAILED.value:
                failed += 1
    return dict(counts), failed
