"""The inventories a service may run: files in one folder, named by their file name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Final

from bulkkm.errors import BulkkmError, InventoryError
from bulkkm.inventory import describe, load_inventory
from bulkkm.logs import printable
from bulkkm.service._errors import BadRequest

__all__ = ["InventoryInfo", "inventory_path", "list_inventories"]

SUFFIXES: Final = (".yaml", ".yml", ".toml")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InventoryInfo:
    """One inventory file, validated as ``bulkkm validate`` does."""

    name: str
    valid: bool
    clusters: int | None
    summary: str | None
    """``validate``'s totals line."""
    problems: tuple[str, ...]
    """Errors, as ``validate`` prints them (file, line, key path)."""
    warnings: tuple[str, ...]


def list_inventories(folder: Path) -> list[InventoryInfo]:
    """Every inventory file in ``folder`` (not below), validated; blocking: call in a thread."""
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file())
    return [_info(path) for path in files]


def _info(path: Path) -> InventoryInfo:
    """One file, loaded and checked."""
    try:
        inventory = load_inventory(path)
    except InventoryError as exc:
        problems = tuple(printable(str(p)) for p in exc.problems)
        return _invalid(path, problems)
    except BulkkmError as exc:
        return _invalid(path, (printable(str(exc)),))
    return InventoryInfo(
        name=path.name,
        valid=True,
        clusters=len(inventory.clusters),
        summary=next((line for line in reversed(describe(inventory)) if "clusters" in line), None),
        problems=(),
        warnings=tuple(inventory.warnings),
    )


def _invalid(path: Path, problems: tuple[str, ...]) -> InventoryInfo:
    """A file that is not a valid inventory."""
    return InventoryInfo(
        name=path.name, valid=False, clusters=None, summary=None, problems=problems, warnings=()
    )


def inventory_path(folder: Path, name: object) -> Path:
    """The file a run names: a file name in ``folder``, nothing outside it."""
    if not isinstance(name, str) or not name:
        raise BadRequest("inventory: a file name from GET /api/v1/inventories is needed")
    path = folder / name
    if Path(name).name != name or name.startswith(".") or path.suffix not in SUFFIXES:
        raise BadRequest(f"inventory {name!r}: a file name from GET /api/v1/inventories")
    if not path.is_file():
        raise BadRequest(f"inventory {name!r}: no such file in the inventories folder")
    return path
