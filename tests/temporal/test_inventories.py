"""A worker's inventory: loaded once, loaded again only when the file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from bulkkm.temporal._inventories import InventoryCache

INVENTORY = """\
version: 1
allow_plaintext_secrets: true
defaults:
  username: admin
  password: secret
  region: eu
  key_servers: [kms1.example.com]
clusters:
  - {name: a, address: 10.0.0.1, svms: all}
  - {name: b, address: 10.0.0.2, svms: all}
"""


def test_the_inventory_is_loaded_once_while_the_file_is_unchanged(tmp_path: Path) -> None:
    """Many activities, one load: the same clusters come back without reading the file."""
    path = tmp_path / "fleet.yaml"
    path.write_text(INVENTORY)
    cache = InventoryCache(path)
    first = cache.get()
    for _ in range(5):
        assert cache.get(first.inventory.sha256) is first
    assert cache.loads == 1
    assert [c.name for c in first.only(("b", "x", "a")).clusters] == ["b", "a"]


def test_an_edited_inventory_is_loaded_again(tmp_path: Path) -> None:
    """A file rewritten (even with the same size and timestamp) is read again before use."""
    path = tmp_path / "fleet.yaml"
    path.write_text(INVENTORY)
    cache = InventoryCache(path)
    before = cache.get()
    stat = path.stat()
    path.write_text(INVENTORY.replace("10.0.0.2", "10.0.0.3"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = cache.get()
    assert after is not before
    assert after.by_name["b"].host == "10.0.0.3"
    assert cache.loads == 2


def test_a_stale_copy_is_checked_against_the_coordinators_sha256(tmp_path: Path) -> None:
    """The coordinator's sha256 differing from the cached one makes the worker read again."""
    path = tmp_path / "fleet.yaml"
    path.write_text(INVENTORY)
    cache = InventoryCache(path)
    cache.get()
    assert cache.get("0" * 64).inventory.sha256 != "0" * 64
    assert cache.loads == 2
