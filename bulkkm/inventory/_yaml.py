"""YAML through PyYAML's safe loader, remembering the line of every key and list item."""

from __future__ import annotations

import collections.abc
from collections.abc import Iterator

from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, SequenceNode

from bulkkm.inventory._format import KeyPath

try:  # libyaml's parser is several times faster; the constructor is the same
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["YamlDocument", "parse_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Lines:
    """Lines of keys and items, by the identity of the dict or list that holds them."""

    __slots__ = ("duplicates", "mappings", "sequences")

    def __init__(self) -> None:
        """Start empty."""
        # Each entry keeps its container alive so that its id cannot be reused.
        self.mappings: dict[int, tuple[dict[object, object], dict[object, int], int]] = {}
        self.sequences: dict[int, tuple[list[object], list[int], int]] = {}
        self.duplicates: list[tuple[dict[object, object], str, int]] = []

    def start(self, value: object) -> int | None:
        """The line where a mapping or list begins, if it is one the loader built."""
        if isinstance(value, dict) and id(value) in self.mappings:
            return self.mappings[id(value)][2]
        if isinstance(value, list) and id(value) in self.sequences:
            return self.sequences[id(value)][2]
        return None

    def locate(self, root: object, path: KeyPath) -> int | None:
        """The line of the deepest part of ``path`` that exists in the document."""
        line = self.start(root)
        node = root
        for step in path:
            if isinstance(node, dict) and isinstance(step, str) and id(node) in self.mappings:
                key_lines = self.mappings[id(node)][1]
                if step not in key_lines:
                    break
                line, node = key_lines[step], node[step]
            elif (
                isinstance(node, list)
                and isinstance(step, int)
                and id(node) in self.sequences
                and 0 <= step < len(node)
            ):
                line, node = self.sequences[id(node)][1][step], node[step]
            else:
                break
        return line


class _LineLoader(_BaseLoader):
    """A safe loader that records the line of every key and item, and keys written twice."""

    def __init__(self, stream: str) -> None:
        """Load from ``stream`` into a fresh line table."""
        super().__init__(stream)
        self.lines = _Lines()

    def construct_line_map(self, node: MappingNode) -> Iterator[dict[object, object]]:
        """Build a dict (two-step, so anchors may refer back to it), noting key lines."""
        data: dict[object, object] = {}
        yield data
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            if isinstance(key, collections.abc.Hashable):
                if key in seen:
                    self.lines.duplicates.append((data, str(key), key_node.start_mark.line + 1))
                seen.add(key)
        # Merge keys (`<<: *base`) go first; the mapping's own keys then override them.
        self.flatten_mapping(node)
        key_lines: dict[object, int] = {}
        for key_node, value_node in node.value:
            key = self.construct_object(key_node)
            if not isinstance(key, collections.abc.Hashable):
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a key that is a list or a mapping",
                    key_node.start_mark,
                )
            data[key] = self.construct_object(value_node)
            key_lines[key] = key_node.start_mark.line + 1
        self.lines.mappings[id(data)] = (data, key_lines, node.start_mark.line + 1)

    def construct_line_seq(self, node: SequenceNode) -> Iterator[list[object]]:
        """Build a list (two-step, like the map), noting each item's line."""
        data: list[object] = []
        yield data
        data.extend(self.construct_object(child) for child in node.value)
        item_lines = [child.start_mark.line + 1 for child in node.value]
        self.lines.sequences[id(data)] = (data, item_lines, node.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _LineLoader.construct_line_seq)


class YamlDocument:
    """A parsed YAML document and the lines of its parts."""

    __slots__ = ("_lines", "data")

    def __init__(self, data: object, lines: _Lines) -> None:
        """Keep the data and its line table."""
        self.data = data
        self._lines = lines

    def locate(self, path: KeyPath) -> int | None:
        """The line of ``path`` (or of its deepest existing part)."""
        return self._lines.locate(self.data, path)

    def duplicates(self) -> tuple[tuple[KeyPath, int], ...]:
        """Each key written twice in one mapping: its path and the line of the repeat."""
        if not self._lines.duplicates:
            return ()
        paths = _container_paths(self.data)
        return tuple(
            ((*paths.get(id(container), ()), key), line)
            for container, key, line in self._lines.duplicates
        )


def _container_paths(root: object) -> dict[int, KeyPath]:
    """The path of every dict and list in the document (the first path, for shared anchors)."""
    paths: dict[int, KeyPath] = {}
    stack: list[tuple[object, KeyPath]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if not isinstance(node, dict | list) or id(node) in paths:
            continue
        paths[id(node)] = path
        if isinstance(node, dict):
            stack.extend((v, (*path, str(k))) for k, v in node.items())
        else:
            stack.extend((v, (*path, i)) for i, v in enumerate(node))
    return paths


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document; raises ``yaml.YAMLError`` when it is not valid YAML."""
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return YamlDocument(data, loader.lines)
