"""ONTAP's query language for GETs: ``fields``, field filters, ``max_records`` paging.

A resource is described by a ``Schema``: the dotted field names ONTAP knows for it (an
unknown field in ``fields`` or in a filter is refused, as ONTAP does), its key fields
(always returned), the fields a collection returns by default, and the expensive ones
(returned only when asked for by name or with ``**``).
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias

from bulkkm.simulator import _errors as codes
from bulkkm.simulator._errors import SimError

__all__ = ["JsonObj", "Schema", "collection", "instance"]

JsonObj: TypeAlias = dict[str, object]

_CONTROL: Final = frozenset(
    {"fields", "max_records", "return_records", "return_timeout", "order_by"}
)
_START: Final = "start.key"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Schema:
    """What ONTAP knows about one resource's fields."""

    fields: frozenset[str]
    keys: tuple[str, ...]
    defaults: tuple[str, ...] = ()
    expensive: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        names: Iterable[str],
        *,
        keys: tuple[str, ...],
        defaults: tuple[str, ...] = (),
        expensive: Iterable[str] = (),
    ) -> Schema:
        """A schema from leaf names; every prefix of a name is a field too."""
        known: set[str] = {"_links"}
        for name in (*names, *keys, *defaults, *expensive):
            parts = name.split(".")
            known.update(".".join(parts[: i + 1]) for i in range(len(parts)))
        return cls(
            fields=frozenset(known), keys=keys, defaults=defaults, expensive=frozenset(expensive)
        )


def _tree(paths: Iterable[str]) -> dict[str, object]:
    """Dotted paths as a nested dict; ``None`` marks a field selected whole."""
    root: dict[str, object] = {}
    for path in paths:
        node = root
        *parents, leaf = path.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # an ancestor is already selected whole
            node = child
        else:
            node[leaf] = None
    return root


def _project(value: object, tree: object) -> object:
    """``value`` cut down to the fields named in ``tree`` (``None``: all of it)."""
    if not isinstance(tree, dict):
        return value
    if isinstance(value, list):
        return [_project(item, tree) for item in value]
    if isinstance(value, dict):
        return {name: _project(item, tree[name]) for name, item in value.items() if name in tree}
    return value


def _split_fields(query: Mapping[str, str], schema: Schema) -> tuple[str, ...] | None:
    """The ``fields`` asked for (None when absent); unknown ones are refused."""
    raw = query.get("fields")
    if raw is None:
        return None
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    for name in names:
        if name not in ("*", "**") and name not in schema.fields:
            raise SimError(
                codes.UNEXPECTED_ARGUMENT,
                f'Unexpected argument "{name}".',
                target="fields",
            )
    return names


def select(record: JsonObj, names: tuple[str, ...] | None, schema: Schema, *, one: bool) -> JsonObj:
    """The part of ``record`` to return for ``fields=names`` (``one``: an instance GET)."""
    if names is None:
        names = ("*",) if one else schema.defaults
    if "**" in names:
        return record
    wanted: list[str] = [*schema.keys, "_links"]
    whole = "*" in names
    if whole:
        wanted.extend(name for name in record if name not in schema.expensive)
    wanted.extend(name for name in names if name != "*")
    projected = _project(record, _tree(wanted))
    assert isinstance(projected, dict)
    return projected


def _lookup(value: object, parts: Sequence[str]) -> list[object]:
    """Every value at the dotted path ``parts`` (lists fan out)."""
    if isinstance(value, list):
        return [found for item in value for found in _lookup(item, parts)]
    if not parts:
        return [value]
    if isinstance(value, dict) and parts[0] in value:
        return _lookup(value[parts[0]], parts[1:])
    return []


def _text(value: object) -> str:
    """How a record value compares with a query string (booleans as ``true``/``false``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).lower()


def _matches_one(pattern: str, values: list[object]) -> bool:
    """ONTAP's query syntax for one alternative: ``*`` wildcards, ``!`` negation."""
    negate = pattern.startswith("!")
    pattern = pattern.removeprefix("!").lower()
    if "*" in pattern:
        regex = re.compile(".*".join(re.escape(piece) for piece in pattern.split("*")))
        hit = any(regex.fullmatch(_text(v)) for v in values)
    else:
        hit = any(_text(v) == pattern for v in values)
    return hit != negate


def _filters(query: Mapping[str, str], schema: Schema) -> list[tuple[list[str], list[str]]]:
    """The field filters of a query as (path, alternatives); unknown fields are refused."""
    found: list[tuple[list[str], list[str]]] = []
    for name, value in query.items():
        if name in _CONTROL or name.startswith("start."):
            continue
        if name not in schema.fields or name == "_links":
            raise SimError(codes.UNEXPECTED_ARGUMENT, f'Unexpected argument "{name}".', target=name)
        found.append((name.split("."), value.split("|")))
    return found


def _keep(record: JsonObj, filters: list[tuple[list[str], list[str]]]) -> bool:
    """Whether ``record`` passes every filter."""
    for path, alternatives in filters:
        values = _lookup(record, path)
        if not any(_matches_one(alt, values) for alt in alternatives):
            return False
    return True


def _flag(query: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``false`` in any case)."""
    raw = query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise SimError(codes.INVALID_VALUE, f'Invalid value for "{name}": {raw!r}.', target=name)


def return_records(query: Mapping[str, str]) -> bool:
    """The ``return_records`` flag of a POST (default false)."""
    return _flag(query, "return_records", default=False)


def _max_records(query: Mapping[str, str]) -> int | None:
    """``max_records`` as a positive integer, if given."""
    raw = query.get("max_records")
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise SimError(
            codes.INVALID_VALUE, f'Invalid value for "max_records": {raw!r}.', target="max_records"
        )
    return int(raw)


def _next_href(path: str, query: Mapping[str, str], start: int) -> str:
    """The ``_links.next.href`` that continues a paged collection at ``start``."""
    params = [(k, v) for k, v in query.items() if k != _START]
    params.append((_START, str(start)))
    return f"{path}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe='*')}"


def collection(
    records: Sequence[JsonObj],
    *,
    path: str,
    self_href: str,
    query: Mapping[str, str],
    schema: Schema,
) -> JsonObj:
    """A collection answer: filtered, paged and cut to the asked ``fields``."""
    names = _split_fields(query, schema)
    filters = _filters(query, schema)
    kept = [r for r in records if _keep(r, filters)]
    links: JsonObj = {"self": {"href": self_href}}
    if not _flag(query, "return_records", default=True):
        return {"num_records": len(kept), "_links": links}
    start_raw = query.get(_START, "0")
    start = int(start_raw) if start_raw.isdigit() else 0
    limit = _max_records(query)
    end = len(kept) if limit is None else min(len(kept), start + limit)
    page = [select(r, names, schema, one=False) for r in kept[start:end]]
    if end < len(kept):
        links["next"] = {"href": _next_href(path, query, end)}
    return {"records": page, "num_records": len(page), "_links": links}


def instance(record: JsonObj, *, query: Mapping[str, str], schema: Schema) -> JsonObj:
    """An instance answer cut to the asked ``fields``."""
    return select(record, _split_fields(query, schema), schema, one=True)
