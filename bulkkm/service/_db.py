"""The history database: SQLite in WAL mode, the schema made and migrated at start-up.

Writes go through one connection, whose thread (aiosqlite runs each connection in a thread
of its own, taking calls from a queue) is the one writer; reads use a second, read-only
connection, which WAL lets run beside the writer; each read runs to its end in one call to
that connection's thread, so it sees every write committed before it began.
``schema_version`` holds the schema's number; start-up applies the migrations past it, in
one transaction each, and refuses a database made by a newer bulkkm.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import aiosqlite
import orjson

from bulkkm.codec import timestamp
from bulkkm.errors import UsageError
from bulkkm.service._compliance import ComplianceRow, ComplianceState, Observation
from bulkkm.service._model import Phase, RunRecord, RunState, ScheduleFire, ScheduleRecord
from bulkkm.service._tokens import Principal, Scope

__all__ = ["SCHEMA_VERSION", "Database", "TokenRow"]

MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: tokens and runs
    """
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        command TEXT NOT NULL,
        inventory TEXT NOT NULL,
        options TEXT NOT NULL,
        state TEXT NOT NULL,
        phase TEXT NOT NULL,
        clusters TEXT NOT NULL,
        locks TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        queued_at TEXT,
        started_at TEXT,
        finished_at TEXT,
        plan_hash TEXT,
        plan_expires_at TEXT,
        approved_by TEXT,
        approved_at TEXT,
        approval_comment TEXT,
        ended_by TEXT,
        retry_of TEXT,
        resume TEXT,
        exit_code INTEGER,
        counts TEXT NOT NULL,
        clusters_failed INTEGER NOT NULL,
        error TEXT
    );
    CREATE INDEX runs_by_state ON runs (state, queued_at);
    CREATE INDEX runs_by_creation ON runs (created_at);
    """,
    # 2: schedules, the record of their fires, and runs that approve their own plan
    """
    CREATE TABLE schedules (
        id TEXT PRIMARY KEY,
        inventory TEXT NOT NULL,
        command TEXT NOT NULL,
        cron TEXT NOT NULL,
        tz TEXT NOT NULL,
        auto_approve INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        created_at TEXT NOT NULL,
        next_fire_at TEXT NOT NULL,
        last_fire_at TEXT,
        last_run_id TEXT,
        missed_fires INTEGER NOT NULL,
        last_missed_at TEXT,
        last_error TEXT
    );
    CREATE TABLE schedule_fires (
        id INTEGER PRIMARY KEY,
        schedule_id TEXT NOT NULL,
        fire_at TEXT NOT NULL,
        fired_at TEXT NOT NULL,
        missed INTEGER NOT NULL,
        run_id TEXT,
        error TEXT
    );
    CREATE INDEX schedule_fires_by_schedule ON schedule_fires (schedule_id, id);
    ALTER TABLE runs ADD COLUMN auto_approve INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: compliance, per cluster and key manager, from the latest run that saw it
    """
    CREATE TABLE compliance (
        cluster TEXT NOT NULL,
        svm TEXT NOT NULL,
        key_manager_uuid TEXT,
        state TEXT NOT NULL,
        counts TEXT NOT NULL,
        detail TEXT,
        run_id TEXT NOT NULL,
        command TEXT NOT NULL,
        seen_at TEXT NOT NULL,
        PRIMARY KEY (cluster, svm)
    );
    """,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_TIMES: Final = (
    "created_at",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
    "plan_expires_at",
    "approved_at",
)
_JSON: Final = ("options", "clusters", "locks", "counts")
_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(RunRecord))
_SCHEDULE_COLUMNS: Final = tuple(f.name for f in dataclasses.fields(ScheduleRecord))
_SCHEDULE_TIMES: Final = ("created_at", "next_fire_at", "last_fire_at", "last_missed_at")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TokenRow:
    """A token as stored: no token, only its hash."""

    name: str
    scope: Scope
    created_at: str
    revoked_at: str | None


class Database:
    """The service's database: runs and tokens."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        """Use two open connections (see ``open``)."""
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, path: Path) -> Database:
        """Open (or create) the database at ``path``, migrated to ``SCHEMA_VERSION``."""
        _create(path)
        writer = await aiosqlite.connect(path)
        try:
            await writer.execute("PRAGMA journal_mode=WAL")
            await writer.execute("PRAGMA synchronous=NORMAL")
            await writer.execute("PRAGMA busy_timeout=5000")
            await _migrate(writer, path)
            reader = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True)
        except BaseException:
            await writer.close()
            raise
        await reader.execute_fetchall("PRAGMA busy_timeout=5000")
        reader.row_factory = aiosqlite.Row
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections."""
        await self._reader.close()
        await self._writer.close()

    # --- tokens ----------------------------------------------------------------------

    async def add_token(self, *, name: str, scope: Scope, token_hash: str, now: datetime) -> None:
        """Store a new token's hash; UsageError when the name is taken."""
        try:
            await self._writer.execute(
                "INSERT INTO tokens (name, scope, hash, created_at) VALUES (?, ?, ?, ?)",
                (name, scope.value, token_hash, timestamp(now)),
            )
        except aiosqlite.IntegrityError:
            raise UsageError(f"a token named {name!r} exists already") from None
        await self._writer.commit()

    async def revoke_token(self, name: str, now: datetime) -> bool:
        """Revoke a token by name; False when there is no such live token."""
        cursor = await self._writer.execute(
            "UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
            (timestamp(now), name),
        )
        await self._writer.commit()
        return cursor.rowcount > 0

    async def tokens(self) -> list[TokenRow]:
        """Every token (hashes left out), oldest first."""
        rows = await self._read(
            "SELECT name, scope, created_at, revoked_at FROM tokens ORDER BY id"
        )
        return [
            TokenRow(name=r[0], scope=Scope(r[1]), created_at=r[2], revoked_at=r[3]) for r in rows
        ]

    async def principal(self, token_hash: str) -> tuple[Principal, str] | None:
        """The live token with this hash: who it is, and the stored hash to compare."""
        rows = await self._read(
            "SELECT name, scope, hash FROM tokens WHERE hash = ? AND revoked_at IS NULL",
            (token_hash,),
        )
        if not rows:
            return None
        row = rows[0]
        return Principal(name=row[0], scope=Scope(row[1])), str(row[2])

    # --- runs ------------------------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
        """Insert or replace a run's row."""
        values = [_column(name, getattr(record, name)) for name in _COLUMNS]
        marks = ", ".join("?" * len(_COLUMNS))
        await self._writer.execute(
            f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES ({marks})",  # noqa: S608 -- our own column names
            values,
        )
        await self._writer.commit()

    async def run(self, run_id: str) -> RunRecord | None:
        """One run, or None."""
        rows = await self._select("WHERE id = ?", (run_id,))
        return rows[0] if rows else None

    async def runs(
        self,
        *,
        states: Iterable[RunState] = (),
        since: datetime | None = None,
        limit: int = 100,
        oldest_first: bool = False,
    ) -> list[RunRecord]:
        """Runs, newest first (or oldest queued first), filtered by state and creation time."""
        where: list[str] = []
        args: list[object] = []
        wanted = [s.value for s in states]
        if wanted:
            where.append(f"state IN ({', '.join('?' * len(wanted))})")
            args += wanted
        if since is not None:
            where.append("created_at >= ?")
            args.append(timestamp(since))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = "queued_at, rowid" if oldest_first else "created_at DESC, rowid DESC"
        return await self._select(f"{clause} ORDER BY {order} LIMIT ?", (*args, limit))

    async def run_counts(self) -> dict[str, int]:
        """How many runs are in each state."""
        rows = await self._read("SELECT state, COUNT(*) FROM runs GROUP BY state")
        return {str(row[0]): int(row[1]) for row in rows}

    async def _select(self, clause: str, args: Sequence[object]) -> list[RunRecord]:
        """Runs matching a WHERE/ORDER clause."""
        rows = await self._read(
            f"SELECT {', '.join(_COLUMNS)} FROM runs {clause}",  # noqa: S608 -- our own clause
            tuple(args),
        )
        return [_record(row) for row in rows]

    async def _read(self, sql: str, args: Sequence[object] = ()) -> list[aiosqlite.Row]:
        """Every row of one query on the reader, run to its end in one call to its thread.

        Never a cursor left open across an ``await``: the reader is one connection, and
        while any of its statements is unfinished, its read transaction, and so its
        snapshot, stays open; a query another task runs on it meanwhile sees that old
        snapshot, not what the writer committed since (a run just approved, not seen as
        queued, never started). Run to its end, each query reads what was committed before.
        """
        return list(await self._reader.execute_fetchall(sql, tuple(args)))

    # --- schedules -------------------------------------------------------------------

    async def save_schedule(self, record: ScheduleRecord) -> None:
        """Insert or replace a schedule's row."""
        values = [
            timestamp(v) if isinstance(v, datetime) else v
            for v in (getattr(record, name) for name in _SCHEDULE_COLUMNS)
        ]
        marks = ", ".join("?" * len(_SCHEDULE_COLUMNS))
        await self._writer.execute(
            f"INSERT OR REPLACE INTO schedules ({', '.join(_SCHEDULE_COLUMNS)}) VALUES ({marks})",  # noqa: S608 -- our own column names
            values,
        )
        await self._writer.commit()

    async def schedules(self, schedule_id: str | None = None) -> list[ScheduleRecord]:
        """Every schedule, oldest first (or the one with this id)."""
        where, args = ("WHERE id = ?", (schedule_id,)) if schedule_id is not None else ("", ())
        rows = await self._read(
            f"SELECT {', '.join(_SCHEDULE_COLUMNS)} FROM schedules {where} ORDER BY created_at, id",  # noqa: S608 -- our own clause
            args,
        )
        return [_schedule(row) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete a schedule (its fires stay, for the record); False when there is none."""
        cursor = await self._writer.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
        await self._writer.commit()
        return cursor.rowcount > 0

    async def add_fire(self, fire: ScheduleFire) -> None:
        """Record one fire of a schedule (on time or missed; the run it made, or why none)."""
        await self._writer.execute(
            "INSERT INTO schedule_fires (schedule_id, fire_at, fired_at, missed, run_id, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                fire.schedule_id,
                timestamp(fire.fire_at),
                timestamp(fire.fired_at),
                int(fire.missed),
                fire.run_id,
                fire.error,
            ),
        )
        await self._writer.commit()

    async def fires(self, schedule_id: str, limit: int = 20) -> list[ScheduleFire]:
        """A schedule's latest fires, newest first."""
        rows = await self._read(
            "SELECT schedule_id, fire_at, fired_at, missed, run_id, error FROM schedule_fires "
            "WHERE schedule_id = ? ORDER BY id DESC LIMIT ?",
            (schedule_id, limit),
        )
        return [
            ScheduleFire(
                schedule_id=str(r[0]),
                fire_at=datetime.fromisoformat(str(r[1])),
                fired_at=datetime.fromisoformat(str(r[2])),
                missed=bool(r[3]),
                run_id=r[4],
                error=r[5],
            )
            for r in rows
        ]

    # --- compliance ------------------------------------------------------------------

    async def update_compliance(self, seen: Observation) -> None:
        """Store what one run saw: its key managers' rows, and the clusters it could not reach.

        Unsettled (unknown) rows are written only where no row exists. A cluster that could
        not be discovered marks its key managers' rows with its state and detail (the run
        tried, and could not say more); a cluster never seen before gets that row itself,
        without an SVM.
        """
        columns = (
            "INTO compliance (cluster, svm, key_manager_uuid, state, counts, detail, run_id, "
            "command, seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        insert = f"INSERT OR REPLACE {columns}"
        await self._writer.executemany(insert, [_compliance_values(r) for r in seen.rows])
        await self._writer.executemany(
            f"INSERT OR IGNORE {columns}", [_compliance_values(r) for r in seen.unknown]
        )
        for row in seen.unreached:
            if row.state is ComplianceState.UNKNOWN:  # not reached: what was known stays
                await self._writer.execute(f"INSERT OR IGNORE {columns}", _compliance_values(row))
                continue
            cursor = await self._writer.execute(
                "UPDATE compliance SET state = ?, detail = ?, run_id = ?, command = ?, "
                "seen_at = ? WHERE cluster = ?",
                (
                    row.state.value,
                    row.detail,
                    row.run_id,
                    row.command,
                    timestamp(row.seen_at),
                    row.cluster,
                ),
            )
            if cursor.rowcount == 0:
                await self._writer.execute(insert, _compliance_values(row))
        await self._writer.commit()

    async def compliance(self) -> list[ComplianceRow]:
        """Every key manager's latest state, by cluster and SVM."""
        rows = await self._read(
            "SELECT cluster, svm, key_manager_uuid, state, counts, detail, run_id, command, "
            "seen_at FROM compliance ORDER BY cluster, svm"
        )
        return [
            ComplianceRow(
                cluster=str(r[0]),
                svm=str(r[1]) or None,
                key_manager_uuid=r[2],
                state=ComplianceState(str(r[3])),
                counts=orjson.loads(str(r[4])),
                detail=r[5],
                run_id=str(r[6]),
                command=str(r[7]),
                seen_at=datetime.fromisoformat(str(r[8])),
            )
            for r in rows
        ]


def _compliance_values(row: ComplianceRow) -> tuple[object, ...]:
    """A compliance row as its columns store it (the cluster's own key manager: SVM '')."""
    return (
        row.cluster,
        row.svm or "",
        row.key_manager_uuid,
        row.state.value,
        orjson.dumps(dict(row.counts)).decode(),
        row.detail,
        row.run_id,
        row.command,
        timestamp(row.seen_at),
    )


def _schedule(row: Sequence[object]) -> ScheduleRecord:
    """A schedule's row read back."""
    values: dict[str, object] = dict(zip(_SCHEDULE_COLUMNS, row, strict=True))
    for name in _SCHEDULE_TIMES:
        if values[name] is not None:
            values[name] = datetime.fromisoformat(str(values[name]))
    values["auto_approve"] = bool(values["auto_approve"])
    return ScheduleRecord(**values)  # type: ignore[arg-type]


def _create(path: Path) -> None:
    """The database file, made 0600 before SQLite opens it (it holds the tokens' hashes)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


async def _migrate(db: aiosqlite.Connection, path: Path) -> None:
    """Bring the schema to ``SCHEMA_VERSION``, one transaction per migration."""
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    async with db.execute("SELECT version FROM schema_version") as cursor:
        row = await cursor.fetchone()
    if row is None:
        await db.execute("INSERT INTO schema_version (version) VALUES (0)")
        await db.commit()
    current = 0 if row is None else int(row[0])
    if current > SCHEMA_VERSION:
        raise UsageError(
            f"{path}: schema version {current} is newer than this bulkkm knows "
            f"({SCHEMA_VERSION}); use the bulkkm that made it"
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[version - 1]
        await db.executescript(
            f"BEGIN; {script}; UPDATE schema_version SET version = {version}; COMMIT;"  # noqa: S608 -- our own script
        )


def _column(name: str, value: object) -> object:
    """A record's field as its column stores it."""
    if value is None:
        return None
    if name in _TIMES:
        assert isinstance(value, datetime)
        return timestamp(value)
    if name in _JSON:
        return orjson.dumps(value).decode()
    if isinstance(value, RunState | Phase):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


def _record(row: Mapping[str, object] | aiosqlite.Row) -> RunRecord:
    """A row read back."""
    values: dict[str, object] = {}
    for name in _COLUMNS:
        raw = row[name]
        if raw is None:
            values[name] = None
        elif name in _TIMES:
            values[name] = datetime.fromisoformat(str(raw))
        elif name in ("clusters",):
            values[name] = tuple(tuple(pair) for pair in orjson.loads(str(raw)))
        elif name == "locks":
            values[name] = tuple(orjson.loads(str(raw)))
        elif name in _JSON:
            values[name] = orjson.loads(str(raw))
        else:
            values[name] = raw
    values["auto_approve"] = bool(values["auto_approve"])
    values["state"] = RunState(str(values["state"]))
    values["phase"] = Phase(str(values["phase"]))
    return RunRecord(**values)  # type: ignore[arg-type]
