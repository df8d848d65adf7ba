"""TOML through ``tomllib``, with a best-effort guess at the line of each key path."""

from __future__ import annotations

import re
import tomllib
from typing import Final

from bulkkm.inventory._format import KeyPath

__all__ = ["TomlDocument", "parse_toml", "toml_error_line"]

_ERROR_LINE: Final = re.compile(r"\(at line (\d+), column \d+\)")
_HEADER: Final = re.compile(r"\s*(\[\[?)([^\[\]]+)\]\]?\s*(?:#.*)?")
_KEY: Final = re.compile(r"\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


class TomlDocument:
    """A parsed TOML document and the lines of the keys its text shows."""

    __slots__ = ("_lines", "data")

    def __init__(self, data: object, lines: dict[KeyPath, int]) -> None:
        """Keep the data and the line table."""
        self.data = data
        self._lines = lines

    def locate(self, path: KeyPath) -> int | None:
        """The line of ``path`` or of its nearest ancestor the scan found; None if none."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return None


def parse_toml(text: str) -> TomlDocument:
    """Parse TOML; raises ``tomllib.TOMLDecodeError`` when it is not valid TOML."""
    return TomlDocument(tomllib.loads(text), _scan_lines(text))


def toml_error_line(error: tomllib.TOMLDecodeError, text: str) -> int | None:
    """The line ``tomllib`` names in its message (it has no attribute for it before 3.14)."""
    match = _ERROR_LINE.search(str(error))
    if match:
        return int(match.group(1))
    return max(1, len(text.splitlines())) if "end of document" in str(error) else None


def _key_parts(text: str) -> KeyPath:
    """``a.b."c"`` -> ``("a", "b", "c")`` (dots inside quotes are not handled)."""
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def _scan_lines(text: str) -> dict[KeyPath, int]:
    """Map table headers and ``key =`` lines to the key paths they define.

    ``tomllib`` keeps no positions, so this reads the text line by line: ``[table]`` and
    ``[[array.of.tables]]`` headers (counting the array entries) and ``key = value`` lines.
    It is a best effort: keys inside inline tables, items of multi-line arrays, and text
    inside multi-line strings are not tracked; a problem there gets the nearest line found.
    """
    lines: dict[KeyPath, int] = {}
    last_index: dict[KeyPath, int] = {}
    table: KeyPath = ()
    in_multiline = False
    for number, line in enumerate(text.splitlines(), start=1):
        quotes = line.count('"""') + line.count("'''")
        if in_multiline:
            in_multiline = quotes % 2 == 0
            continue
        header = _HEADER.fullmatch(line)
        if header:
            table = _table_path(header.group(1), _key_parts(header.group(2)), last_index)
            lines.setdefault(table, number)
            if header.group(1) == "[[":
                lines.setdefault(table[:-1], number)
            continue
        key = _KEY.match(line)
        if key and not line.lstrip().startswith("#"):
            lines.setdefault(table + _key_parts(key.group(1)), number)
        in_multiline = quotes % 2 == 1
    return lines


def _table_path(bracket: str, parts: KeyPath, last_index: dict[KeyPath, int]) -> KeyPath:
    """The concrete path of a header; ``[[x]]`` opens the next entry of array ``x``."""
    path: KeyPath = ()
    for part in parts[:-1]:
        path = (*path, part)
        if path in last_index:  # a parent that is an array of tables means its last entry
            path = (*path, last_index[path])
    path = (*path, parts[-1])
    if bracket == "[[":
        index = last_index.get(path, -1) + 1
        last_index[path] = index
        path = (*path, index)
    return path
