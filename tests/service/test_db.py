"""The history database: made and migrated at start-up, a newer schema refused; a stop
mid-run leaves the run interrupted."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bulkkm.errors import UsageError
from bulkkm.service._db import SCHEMA_VERSION, Database
from bulkkm.service._model import Phase, RunRecord, RunState
from bulkkm.simulator import Faults
from tests.engine.conftest import fleet_spec
from tests.service.conftest import harness


async def test_schema_is_made_once_and_a_newer_one_refused(tmp_path: Path) -> None:
    """First open makes the schema in WAL mode; reopening keeps it; a newer version is refused."""
    path = tmp_path / "data" / "bulkkm.db"
    for _ in range(2):
        db = await Database.open(path)
        await db.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(UsageError, match="newer than this bulkkm knows"):
        await Database.open(path)


async def test_a_service_stopped_mid_run_leaves_it_interrupted(tmp_path: Path) -> None:
    """Stopping the service interrupts its runs as Ctrl-C would; they end interrupted."""
    spec = fleet_spec(clusters=3, svms=2, initial_servers=0, faults=Faults(latency=0.3))
    async with harness(tmp_path, spec) as h:
        run = await h.admin.start("check")
        await h.admin.until(run["id"], "running")
        data = h.data
    db = await Database.open(data / "bulkkm.db")
    try:
        record = await db.run(run["id"])
    finally:
        await db.close()
    assert record is not None
    assert record.state == "interrupted"
    assert record.exit_code == 130


async def test_a_read_sees_every_write_committed_before_it_began(tmp_path: Path) -> None:
    """Reads beside other reads in flight still see the latest commit (none pins a snapshot).

    The run manager saves a run's new state, then reads which runs are queued; with other
    requests reading meanwhile (the page polls, event streams), that read must see the save,
    or an approved run is never started.
    """
    db = await Database.open(tmp_path / "data" / "bulkkm.db")
    now = datetime.now(UTC)
    record = RunRecord(
        id="run-1",
        command="apply",
        inventory="fleet.yaml",
        options={},
        state=RunState.AWAITING_APPROVAL,
        phase=Phase.EXECUTE,
        clusters=(("sim-0000", "127.0.0.1:1"),),
        locks=("127.0.0.1:1",),
        created_by="test",
        created_at=now,
        updated_at=now,
    )
    stop = asyncio.Event()

    async def poll() -> None:  # another client reading the run, as fast as it can
        while not stop.is_set():
            await db.run(record.id)
            await db.runs(limit=10)

    pollers = [asyncio.create_task(poll()) for _ in range(4)]
    try:
        for number in range(300):
            state = (RunState.QUEUED, RunState.AWAITING_APPROVAL)[number % 2]
            await db.save_run(dataclasses.replace(record, state=state))
            queued = [r.id for r in await db.runs(states=(RunState.QUEUED,))]
            assert queued == ([record.id] if state is RunState.QUEUED else []), number
            seen = await db.run(record.id)
            assert seen is not None
            assert seen.state is state, number
    finally:
        stop.set()
        await asyncio.gather(*pollers)
        await db.close()
