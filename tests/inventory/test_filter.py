"""Selecting clusters: ``Inventory.filter`` (globs and names, as ``--limit``), ``only`` (names)."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from bulkkm.inventory import Cluster, Inventory

NAMES = ("paris-01", "paris-02", "lyon-01", "db[1]", "db1", "nyc-01", "a?b", "axb")


def _inventory() -> Inventory:
    """An inventory of ``NAMES``, in that order."""
    clusters = tuple(Cluster(name=n, host=f"10.0.0.{i}") for i, n in enumerate(NAMES, 1))
    return Inventory(path=Path("fleet.yaml"), sha256="0" * 64, clusters=clusters)


@pytest.mark.parametrize(
    "patterns",
    [
        ("paris-01",),
        ("paris-*",),
        ("paris-01", "lyon-*"),
        ("db[1]",),
        ("db[[]1]",),
        ("a?b",),
        ("*-01", "nyc-01", "db?"),
        ("nothing",),
        ("[",),
    ],
)
def test_filter_keeps_what_fnmatchcase_matches_in_inventory_order(
    patterns: tuple[str, ...],
) -> None:
    """Names and globs mixed select exactly the clusters ``fnmatchcase`` matches, in order."""
    kept = [c.name for c in _inventory().filter(patterns).clusters]
    assert kept == [n for n in NAMES if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def test_filter_without_patterns_is_the_inventory_itself() -> None:
    """No ``--limit``: the same inventory, not a copy."""
    inventory = _inventory()
    assert inventory.filter(()) is inventory


def test_only_takes_names_literally() -> None:
    """``only`` matches names exactly: ``db[1]`` is that cluster, not ``db1``; order kept."""
    kept = _inventory().only(["nyc-01", "db[1]", "a?b", "missing"]).clusters
    assert [c.name for c in kept] == ["db[1]", "nyc-01", "a?b"]
