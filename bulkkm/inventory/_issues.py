"""Collecting every problem of one load, so they are all reported together."""

from __future__ import annotations

import datetime
from collections.abc import Callable

from bulkkm.errors import Problem
from bulkkm.inventory._format import KeyPath, render_path

__all__ = ["Issues", "describe_type", "some_names"]


class Issues:
    """The problems found so far, by key path; each distinct one kept once, in order found."""

    __slots__ = ("_found",)

    def __init__(self) -> None:
        """Start with none."""
        self._found: dict[tuple[KeyPath, str], int | None] = {}

    def add(self, path: KeyPath, message: str, *, line: int | None = None) -> None:
        """Record a problem at ``path``; ``line`` overrides the line found from the path."""
        self._found.setdefault((path, message), line)

    def __bool__(self) -> bool:
        """Whether anything was found."""
        return bool(self._found)

    def problems(self, file: str, locate: Callable[[KeyPath], int | None]) -> tuple[Problem, ...]:
        """Every problem, located and sorted by line (problems without one last)."""
        problems = [
            Problem(
                file=file,
                line=line if line is not None else locate(path),
                key_path=render_path(path),
                message=message,
            )
            for (path, message), line in self._found.items()
        ]
        # A stable sort keeps the order found among problems on the same line.
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        return tuple(problems)


def describe_type(value: object) -> str:
    """How a value's type reads in a message: ``a string``, ``a list``, ``nothing (null)``."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        # `svms: [no]` (Norway), `name: on`: YAML 1.1 reads these words unquoted as booleans.
        return "a boolean (YAML reads yes, no, on, off, true, false unquoted as one: quote a name)"
    if isinstance(value, datetime.date):  # a datetime is a date
        return "a date (quote it if it is a name)"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def some_names(noun: str, names: list[str] | tuple[str, ...], shown: int = 3) -> str:
    """``cluster a`` / ``clusters a, b, c and 4 more``: a list short enough for one line."""
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return f"{noun} {unique[0]}"
    head = ", ".join(unique[:shown])
    rest = len(unique) - shown
    return f"{noun}s {head} and {rest} more" if rest > 0 else f"{noun}s {head}"
