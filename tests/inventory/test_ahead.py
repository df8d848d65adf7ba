"""An inventory parsed ahead in a child process loads exactly as one read in-process."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest

from bulkkm.errors import InventoryError, Problem
from bulkkm.inventory import load_inventory, read_ahead
from tests.inventory.conftest import ENV, Write, load, problems_of

INVENTORIES = Path(__file__).resolve().parents[2] / "inventories"
EXAMPLES = sorted(p for p in INVENTORIES.iterdir() if p.suffix in {".yaml", ".yml", ".toml"})

needs_fork = pytest.mark.skipif(
    not sys.platform.startswith("linux") or threading.active_count() > 1,
    reason="a child is forked on Linux only, and only while no other thread runs",
)


def _problems_ahead(path: Path) -> tuple[Problem, ...]:
    """The problems of ``path`` loaded with a read-ahead (fails if it loads)."""
    with read_ahead(path) as ahead, pytest.raises(InventoryError) as info:
        load_inventory(path, environ=ENV, ahead=ahead)
    return info.value.problems


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_loads_the_same_ahead(path: Path) -> None:
    """The examples (YAML ahead, TOML in-process) give the very inventory of a plain load."""
    with read_ahead(path) as ahead:
        if path.suffix == ".toml":
            assert ahead is None
        inventory = load_inventory(path, environ=ENV, ahead=ahead)
    assert inventory == load(path)


@needs_fork
def test_the_child_parses_a_clean_file(write: Write) -> None:
    """A clean YAML file comes back from the child as plain data, its digest the file's."""
    path = write(
        """\
        version: 1
        clusters:
          - {name: paris-01, address: 10.0.0.1:8443, svms: all}
        """
    )
    with read_ahead(path) as ahead:
        assert ahead is not None
        source = ahead.source()
    assert source is not None
    assert source.data == {
        "version": 1,
        "clusters": [{"name": "paris-01", "address": "10.0.0.1:8443", "svms": "all"}],
    }
    assert source.locate(("clusters", 0)) is None  # no lines: problems are found again


@needs_fork
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("version: 1\nclusters: [\n", id="invalid-yaml"),
        pytest.param("version: 1\nversion: 1\nclusters: []\n", id="duplicate-key"),
        pytest.param("- a list\n", id="not-a-mapping"),
        pytest.param("version: 1\nwhen: 2024-01-01\nclusters: []\n", id="a-timestamp"),
    ],
)
def test_what_the_child_cannot_take_is_read_by_the_parent(write: Write, text: str) -> None:
    """Invalid YAML, keys written twice, no mapping, values marshal cannot carry: no data."""
    path = write(text)
    with read_ahead(path) as ahead:
        assert ahead is not None
        assert ahead.source() is None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            """\
            version: 1
            defaults:
              username: admin
              password: env:ONTAP_PASSWORD
              key_servers: [kms.example.com]
              svms: all
            clusters:
              - {name: paris-01, address: 10.0.0.1}
              - {name: paris-01, address: "10.0.0.300"}
              - {name: lyon-01, addres: 10.0.0.3}
            """,
            id="problems-on-clusters",
        ),
        pytest.param("version: 1\nversion: 1\nclusters: []\n", id="duplicate-key"),
        pytest.param("version: 1\nclusters: [\n", id="invalid-yaml"),
        pytest.param("", id="empty"),
    ],
)
def test_problems_are_reported_alike_with_their_lines(write: Write, text: str) -> None:
    """A file with problems gives the same problems, lines included, ahead or not."""
    path = write(text)
    assert _problems_ahead(path) == problems_of(path)
    assert any(p.line is not None for p in problems_of(path)) or not text


@needs_fork
def test_closing_stops_a_child_not_waited_for(write: Write) -> None:
    """Leaving the block without the data ends the child and releases the pipe."""
    path = write("version: 1\nclusters: []\n")
    with read_ahead(path) as ahead:
        assert ahead is not None
        pid = ahead._pid
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
