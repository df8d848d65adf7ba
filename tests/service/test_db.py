"""The history database: made and migrated at start-up, a newer schema refused; a stop
mid-run leaves the run interrupted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bulkkm.errors import UsageError
from bulkkm.service._db import SCHEMA_VERSION, Database
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
