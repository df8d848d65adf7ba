"""``load_inventory``: read, check and resolve an inventory file in one pass."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from bulkkm import collector
from bulkkm.errors import InventoryError
from bulkkm.inventory._ahead import ReadAhead
from bulkkm.inventory._issues import Issues
from bulkkm.inventory._model import Inventory
from bulkkm.inventory._parse import parse_document
from bulkkm.inventory._resolve import resolve
from bulkkm.inventory._source import Source, read_source, source_of

__all__ = ["load_inventory"]


def load_inventory(
    path: Path, *, environ: Mapping[str, str] | None = None, ahead: ReadAhead | None = None
) -> Inventory:
    """Load the inventory at ``path``, secrets resolved from ``environ`` (default os.environ).

    ``ahead``: the file as ``read_ahead`` started parsing it (for ``path``). Raises
    ``InventoryError`` carrying every problem found in the file.
    """
    environ = os.environ if environ is None else environ
    with collector.paused():
        if ahead is None:
            return _load(path, read_source(path), environ)
        parsed = ahead.source()
        if parsed is not None:
            with contextlib.suppress(InventoryError):
                return _load(path, parsed, environ)
        # The child could not take it, or the file has problems: they are found again here,
        # from the same bytes, with the lines the child's data does not carry.
        return _load(path, source_of(path, ahead.raw), environ)


def _load(path: Path, source: Source, environ: Mapping[str, str]) -> Inventory:
    """Check and resolve; raise with every problem found."""
    issues = Issues()
    for key_path, line in source.duplicates:
        issues.add(
            key_path,
            f"duplicate key {key_path[-1]!r}: a key may appear once in a mapping",
            line=line,
        )
    document = parse_document(source.data, issues)
    clusters, warnings = resolve(
        document,
        base_dir=path.parent.absolute(),
        environ=environ,
        issues=issues,
    )
    if issues:
        raise InventoryError(issues.problems(str(path), source.locate))
    return Inventory(
        path=path,
        sha256=source.sha256,
        clusters=clusters,
        warnings=warnings,
        rollout=document.rollout,
    )
