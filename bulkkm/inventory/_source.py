"""Reading an inventory file into plain data, a line locator and its digest."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from pathlib import Path

from bulkkm.errors import InventoryError, Problem
from bulkkm.inventory._format import KeyPath
from bulkkm.inventory._issues import describe_type

__all__ = ["Source", "read_source", "source_of"]


def _no_line(_: KeyPath) -> int | None:
    """A locator for documents without positions."""
    return None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """The top-level mapping of an inventory file, with what is needed to report on it."""

    data: dict[object, object]
    sha256: str
    locate: Callable[[KeyPath], int | None] = _no_line
    duplicates: tuple[tuple[KeyPath, int], ...] = ()
    """Keys written twice in one mapping (YAML; TOML refuses them itself)."""


def read_source(path: Path) -> Source:
    """Read and parse ``path`` (``.toml`` as TOML, anything else as YAML).

    Raises ``InventoryError`` with a single problem when the file cannot be read, is not
    valid YAML or TOML, is empty, or does not hold a mapping.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _failure(path, f"cannot read the file: {exc.strerror or exc}") from None
    return source_of(path, raw)


def _failure(path: Path, message: str, line: int | None = None) -> InventoryError:
    """The error for a file that cannot be read as an inventory at all."""
    return InventoryError((Problem(file=str(path), line=line, key_path="", message=message),))


def source_of(path: Path, raw: bytes) -> Source:
    """``read_source`` of the bytes ``raw`` already read from ``path``."""

    def fail(message: str, line: int | None = None) -> InventoryError:
        """The error for a file that cannot be read as an inventory at all."""
        return _failure(path, message, line)

    digest = hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail("the file is not UTF-8 text", raw[: exc.start].count(b"\n") + 1) from None
    if not text.strip():
        raise fail("the file is empty")

    parse = _toml if path.suffix.lower() == ".toml" else _yaml
    data, locate, duplicates = parse(text, fail)
    if data is None or data == {}:
        raise fail("the file is empty")
    if not isinstance(data, dict):
        raise fail(
            f"expected a mapping at the top (version: 1, clusters: ...), got {describe_type(data)}",
            locate(()),
        )
    return Source(data=data, sha256=digest, locate=locate, duplicates=duplicates)


_Parsed = tuple[object, Callable[[KeyPath], int | None], tuple[tuple[KeyPath, int], ...]]
_Fail = Callable[[str, int | None], InventoryError]


def _toml(text: str, fail: _Fail) -> _Parsed:
    """The data of a TOML file, and where its keys are."""
    # Each format's parser is imported only for a file of that format.
    import tomllib  # noqa: PLC0415

    from bulkkm.inventory._toml import parse_toml, toml_error_line  # noqa: PLC0415

    try:
        document = parse_toml(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"invalid TOML: {exc}", toml_error_line(exc, text)) from None
    return document.data, document.locate, ()


def _yaml(text: str, fail: _Fail) -> _Parsed:
    """The data of a YAML file, where its keys are, and the keys written twice."""
    import yaml  # noqa: PLC0415

    from bulkkm.inventory._yaml import parse_yaml  # noqa: PLC0415

    try:
        document = parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        # Only the problem and its context: the rendered snippet of the offending line
        # could show a password.
        mark = exc.problem_mark or exc.context_mark
        message = "invalid YAML: " + ", ".join(p for p in (exc.context, exc.problem) if p)
        if mark is not None and text[mark.index : mark.index + 1] == "\t":
            # libyaml says only "found character that cannot start any token".
            message += " (a tab: YAML indents with spaces only)"
        # libyaml puts the end of the stream on the line after the last one.
        line = min(mark.line + 1, max(1, len(text.splitlines()))) if mark else None
        raise fail(message, line) from None
    except yaml.YAMLError as exc:
        raise fail(f"invalid YAML: {str(exc).splitlines()[0]}", None) from None
    except RecursionError:
        raise fail("invalid YAML: nested too deeply", None) from None
    return document.data, document.locate, document.duplicates()
