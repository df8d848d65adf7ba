"""The history database: SQLite in WAL mode, the schema made and migrated at start-up.

Writes go through one connection, whose thread (aiosqlite runs each connection in a thread
of its own, taking calls from a queue) is the one writer; reads use a second, read-only
connection, which WAL lets run beside the writer. ``schema_version`` holds the schema's
number; start-up applies the migrations past it, in one transaction each, and refuses a
database made by a newer bulkkm.
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
from bulkkm.service._model import Phase, RunRecord, RunState
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
        await reader.execute("PRAGMA busy_timeout=5000")
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
        async with self._reader.execute(
            "SELECT name, scope, created_at, revoked_at FROM tokens ORDER BY id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [
            TokenRow(name=r[0], scope=Scope(r[1]), created_at=r[2], revoked_at=r[3]) for r in rows
        ]

    async def principal(self, token_hash: str) -> tuple[Principal, str] | None:
        """The live token with this hash: who it is, and the stored hash to compare."""
        async with self._reader.execute(
            "SELECT name, scope, hash FROM tokens WHERE hash = ? AND revoked_at IS NULL",
            (token_hash,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
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

    async def _select(self, clause: str, args: Sequence[object]) -> list[RunRecord]:
        """Runs matching a WHERE/ORDER clause."""
        async with self._reader.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM runs {clause}",  # noqa: S608 -- our own clause
            tuple(args),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_record(row) for row in rows]


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
    values["state"] = RunState(str(values["state"]))
    values["phase"] = Phase(str(values["phase"]))
    return RunRecord(**values)  # type: ignore[arg-type]
