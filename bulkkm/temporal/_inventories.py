"""A worker's copy of the inventory: loaded once, loaded again only when the file changes.

Loading parses, resolves and checks the whole fleet and reads every secret: at 100 clusters
that took about as long as a small cluster's rollout, once per activity. The worker keeps
the last load and its file's identity (device, inode, size, modification and change times);
an activity reloads only when those differ, or when the coordinator's sha256 differs from
the cached one (a file rewritten within one timestamp tick is still caught before a refusal).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import structlog

from bulkkm.inventory import Cluster, Inventory
from bulkkm.request import load

__all__ = ["InventoryCache", "Loaded"]

log = structlog.get_logger("bulkkm")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    """One load of the inventory: the inventory, its clusters by name, the file's identity."""

    inventory: Inventory
    by_name: Mapping[str, Cluster]
    stamp: tuple[int, ...]

    def only(self, names: tuple[str, ...]) -> Inventory:
        """The inventory of these clusters (the known ones, in the order given)."""
        clusters = tuple(self.by_name[n] for n in names if n in self.by_name)
        return dataclasses.replace(self.inventory, clusters=clusters)


class InventoryCache:
    """The inventory file a worker reads, kept loaded between activities."""

    def __init__(self, path: Path) -> None:
        """Nothing loaded yet."""
        self.path = path
        self._loaded: Loaded | None = None
        self.loads = 0
        """How many times the file was loaded (the worker logs it)."""

    def get(self, sha256: str | None = None) -> Loaded:
        """The inventory as the file is now; reloaded if it changed or ``sha256`` differs."""
        stamp = _stamp(self.path)
        loaded = self._loaded
        stale = loaded is None or not stamp or loaded.stamp != stamp
        if not stale and sha256 is not None and loaded is not None:
            stale = loaded.inventory.sha256 != sha256
        if stale or loaded is None:
            inventory = load(self.path)
            loaded = Loaded(
                inventory=inventory,
                by_name={c.name: c for c in inventory.clusters},
                stamp=stamp,
            )
            self._loaded = loaded
            self.loads += 1
            log.info(
                "inventory_loaded",
                inventory=str(self.path),
                sha256=inventory.sha256,
                clusters=len(inventory.clusters),
                loads=self.loads,
            )
        return loaded


def _stamp(path: Path) -> tuple[int, ...]:
    """What changes when the file is rewritten or replaced (an unreadable file: nothing)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
