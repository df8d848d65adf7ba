"""Schedules: a command on an inventory at the times a cron expression names, in a time zone.

Cron expressions are read by cronsim (five fields; one small typed module, no dependency,
DST handled as cron does: a time that does not exist that day fires at the jump, one that
occurs twice fires once). Fire times are computed on the zone's wall clock (``zoneinfo``) and
stored in UTC.

The ``Scheduler`` is one task of the service. Each schedule keeps the next fire time it has
not handled; when that time has come the scheduler creates a run through the run manager,
as ``schedule:ID``, and moves to the next time after now. Fire times that passed while the
service was down (or more than ``LATE`` seconds ago) are *missed*: counted, recorded, and run
once, not once each. An apply or migrate schedule without ``auto_approve`` leaves its run
``awaiting_approval``; with it, the run approves its own plan (by its hash) once planned.

The scheduler reads the time from the service's clock and sleeps until the next fire time,
or until ``poke`` wakes it (a schedule created or deleted, a test that moved the clock), so
tests move a clock and never sleep for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from cronsim import CronSim, CronSimError

from bulkkm.service._db import Database
from bulkkm.service._errors import BadRequest, NotFound, ServiceError
from bulkkm.service._metrics import Metrics
from bulkkm.service._model import ScheduleFire, ScheduleRecord
from bulkkm.service._runs import RunManager
from bulkkm.service._tokens import Principal, Scope

__all__ = ["COMMANDS", "LATE", "Scheduler", "fire_times"]

COMMANDS: Final = ("check", "apply", "migrate")
LATE: Final = 60.0
"""Seconds after its time a fire still counts as on time."""
MAX_WAIT: Final = 300.0
"""The longest the scheduler sleeps without looking (a wall clock may jump)."""
_COUNT_CAP: Final = 10_000
"""Missed fire times counted at most (a per-minute schedule down for a week: 10,080)."""

log = structlog.get_logger("bulkkm.service")


def zone_of(tz: object) -> ZoneInfo:
    """An IANA time zone by name; BadRequest otherwise."""
    if not isinstance(tz, str) or not tz or len(tz) > 64:
        raise BadRequest("tz: an IANA time zone name, like UTC or Europe/Paris")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadRequest(f"tz {tz!r}: no such time zone (an IANA name: Europe/Paris)") from None


def check_cron(cron: object, zone: ZoneInfo) -> str:
    """A five-field cron expression, checked; BadRequest naming what is wrong."""
    if not isinstance(cron, str) or not cron.strip():
        raise BadRequest("cron: a cron expression, like '0 3 * * *'")
    text = " ".join(cron.split())
    if len(text.split()) != 5:
        raise BadRequest(
            f"cron {cron[:60]!r}: five fields (minute hour day-of-month month day-of-week)"
        )
    try:
        next(CronSim(text, datetime.now(zone)))
    except (CronSimError, StopIteration) as exc:
        raise BadRequest(f"cron {text!r}: {exc or 'never fires'}") from None
    return text


def fire_times(cron: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times strictly after ``after``, in UTC."""
    zone = ZoneInfo(tz)
    times = CronSim(cron, after.astimezone(zone))
    out: list[datetime] = []
    with contextlib.suppress(StopIteration):
        while len(out) < count:
            out.append(next(times).astimezone(UTC))
    return out


class Scheduler:
    """Fires the service's schedules; one task, woken by its clock or by ``poke``."""

    def __init__(
        self,
        db: Database,
        manager: RunManager,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        """Nothing fires until ``start``."""
        self._db = db
        self._manager = manager
        self._metrics = metrics
        self._clock = clock
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Run what was missed while the service was down (once each), then watch the clock."""
        await self.run_due(starting=True)
        self._task = asyncio.create_task(self._loop(), name="scheduler")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def poke(self) -> None:
        """Look at the schedules now (one was added, or the clock moved)."""
        self._wake.set()

    # --- what clients ask ----------------------------------------------------------------

    async def create(
        self,
        *,
        inventory: object,
        command: object,
        cron: object,
        tz: object,
        auto_approve: object,
        by: Principal,
    ) -> ScheduleRecord:
        """A new schedule, checked (its inventory too, as a run's would be)."""
        if not isinstance(command, str) or command not in COMMANDS:
            raise BadRequest(f"command: one of {', '.join(COMMANDS)}")
        if not isinstance(auto_approve, bool):
            raise BadRequest("auto_approve: true or false")
        if auto_approve and command == "check":
            raise BadRequest("auto_approve: a check writes nothing, so it has nothing to approve")
        zone = zone_of(tz)
        text = check_cron(cron, zone)
        await self._manager.check_inventory(inventory)
        assert isinstance(inventory, str)
        assert isinstance(tz, str)
        now = self._clock()
        record = ScheduleRecord(
            id=uuid.uuid4().hex[:12],
            inventory=inventory,
            command=command,
            cron=text,
            tz=tz,
            auto_approve=auto_approve,
            created_by=by.name,
            created_at=now,
            next_fire_at=fire_times(text, tz, now, 1)[0],
        )
        await self._db.save_schedule(record)
        log.info(
            "schedule_created",
            schedule=record.id,
            command=command,
            cron=text,
            tz=tz,
            auto_approve=auto_approve,
            by=by.name,
        )
        self.poke()
        return record

    async def delete(self, schedule_id: str, *, by: Principal) -> None:
        """Delete a schedule: no more fires (its runs and fire records stay)."""
        if not await self._db.delete_schedule(schedule_id):
            raise NotFound(f"no schedule {schedule_id!r}")
        log.info("schedule_deleted", schedule=schedule_id, by=by.name)
        self.poke()

    async def get(self, schedule_id: str) -> ScheduleRecord:
        """A schedule; NotFound when there is none."""
        found = await self._db.schedules(schedule_id)
        if not found:
            raise NotFound(f"no schedule {schedule_id!r}")
        return found[0]

    async def all(self) -> list[ScheduleRecord]:
        """Every schedule."""
        return await self._db.schedules()

    async def fires(self, schedule_id: str) -> list[ScheduleFire]:
        """A schedule's latest fires."""
        return await self._db.fires(schedule_id)

    def upcoming(self, record: ScheduleRecord, count: int = 5) -> list[datetime]:
        """The schedule's next ``count`` fire times (the first is the one not handled yet)."""
        first = record.next_fire_at
        return [first, *fire_times(record.cron, record.tz, first, count - 1)]

    # --- inside ----------------------------------------------------------------------------

    async def run_due(self, *, starting: bool = False) -> list[ScheduleFire]:
        """Fire every schedule whose time has come; at start-up every such fire was missed."""
        async with self._lock:
            fired = []
            now = self._clock()
            for record in await self._db.schedules():
                if record.next_fire_at <= now:
                    fired.append(await self._fire(record, now, starting=starting))
            return fired

    async def _fire(self, record: ScheduleRecord, now: datetime, *, starting: bool) -> ScheduleFire:
        """One fire (several fire times past: missed, run once), and the schedule moved on."""
        passed = [record.next_fire_at]
        for moment in fire_times(record.cron, record.tz, record.next_fire_at, _COUNT_CAP):
            if moment > now:
                break
            passed.append(moment)
        latest = passed[-1]
        late = now - latest > timedelta(seconds=LATE)
        missed = len(passed) - 1 + (1 if starting or late else 0)
        run_id, error = None, None
        principal = Principal(name=f"schedule:{record.id}", scope=Scope.OPERATE)
        try:
            run = await self._manager.create(
                inventory=record.inventory,
                command=record.command,
                options={},
                by=principal,
                auto_approve=record.auto_approve,
            )
            run_id = run.id
        except ServiceError as exc:  # the inventory gone or broken, the service stopping
            error = str(exc)
            if exc.problems:
                error += ": " + "; ".join(exc.problems[:3])
        fire = ScheduleFire(
            schedule_id=record.id,
            fire_at=latest,
            fired_at=now,
            missed=missed > 0,
            run_id=run_id,
            error=error,
        )
        # The schedule first, then its fire: whoever reads a fire with its run reads the
        # schedule naming that run too (the other way round, last_run_id lagged behind).
        await self._db.save_schedule(
            dataclasses.replace(
                record,
                next_fire_at=fire_times(record.cron, record.tz, now, 1)[0],
                last_fire_at=latest,
                last_run_id=run_id or record.last_run_id,
                missed_fires=record.missed_fires + missed,
                last_missed_at=latest if missed else record.last_missed_at,
                last_error=error,
            )
        )
        await self._db.add_fire(fire)
        self._metrics.fires.labels("true" if missed else "false").inc()
        log.info(
            "schedule_fired",
            schedule=record.id,
            fire_at=latest.isoformat(),
            missed=missed,
            run=run_id,
            error=error,
        )
        return fire

    async def _next_wait(self) -> float:
        """Seconds until the earliest fire time (at most ``MAX_WAIT``)."""
        schedules = await self._db.schedules()
        if not schedules:
            return MAX_WAIT
        soonest = min(s.next_fire_at for s in schedules)
        return min(max((soonest - self._clock()).total_seconds(), 0.0), MAX_WAIT)

    async def _loop(self) -> None:
        """Fire what is due, sleep until the next time or a poke; a failure is logged."""
        while True:
            self._wake.clear()
            try:
                await self.run_due()
                wait = await self._next_wait()
            except Exception:
                log.exception("scheduler_failed")
                wait = LATE
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
