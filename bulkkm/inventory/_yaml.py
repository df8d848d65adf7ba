"""YAML through PyYAML's safe loader, remembering the line of every key and list item."""

from __future__ import annotations

import collections.abc

from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bulkkm.inventory._format import KeyPath

try:  # libyaml's parser is several times faster; the constructor is the same
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

__all__ = ["YamlDocument", "parse_yaml"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_SPECIAL_KEY_TAGS = frozenset((_MERGE_TAG, _VALUE_TAG))
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("null", "bool", "int", "float", "binary", "timestamp")
)
"""Tags whose safe constructors take a scalar node and return its value directly."""
_KINDS = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:timestamp": "a date",
}
"""What a typed scalar is meant to be, for the message when its text is not one."""


_NOT_FOUND = object()


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
                # A key that is not a string (``1:``, ``yes:``) is named by its str().
                # ``null:`` is a key too: a sentinel says "not found".
                key = (
                    step
                    if step in key_lines
                    else next((k for k in key_lines if str(k) == step), _NOT_FOUND)
                )
                if key is _NOT_FOUND:
                    break
                line, node = key_lines[key], node[key]
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
    """A safe loader that records the line of every key and item, and keys written twice.

    PyYAML composes the nodes (in C with libyaml); mappings and lists are then built here
    in one recursive pass rather than through the constructor's generic two-step machinery,
    which is several times slower on a large fleet. Scalars, and nodes with other tags,
    still go through ``SafeConstructor``, so values mean what they mean to ``safe_load``.
    """

    # Plain scalars starting with any other character can only be strings (YAML 1.1),
    # unless some resolver applies whatever the first character (key None): then none is.
    _MAYBE_TYPED: frozenset[str] = frozenset(k for k in _BaseLoader.yaml_implicit_resolvers if k)
    _ANY_FIRST: bool = None in _BaseLoader.yaml_implicit_resolvers

    def __init__(self, stream: str) -> None:
        """Load from ``stream`` into a fresh line table."""
        super().__init__(stream)
        self.lines = _Lines()
        self._built: dict[Node, object] = {}
        self._plain: dict[str, str] = {}

    def resolve(self, kind: type[Node], value: str | None, implicit: tuple[bool, bool]) -> str:
        """The tag of an untagged node: strings decided here cheaply, the rest by PyYAML.

        Without path resolvers (the safe loader has none), a plain scalar's tag depends on
        its text alone, and a collection's on its kind: each text is resolved once (a fleet
        writes ``name``, ``false``... on every cluster).
        """
        if kind is ScalarNode:
            if value and (
                not implicit[0] or (value[0] not in self._MAYBE_TYPED and not self._ANY_FIRST)
            ):
                return _STR_TAG
            if value is not None and implicit[0] and not self.yaml_path_resolvers:
                tag = self._plain.get(value)
                if tag is None:
                    tag = self._plain[value] = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                return tag
        elif not self.yaml_path_resolvers:
            return _MAP_TAG if kind is MappingNode else _SEQ_TAG
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved

    def build(self, node: Node) -> object:
        """The Python value of ``node`` (the same object for every alias of a node)."""
        tag = node.tag
        if type(node) is ScalarNode:
            if tag == _STR_TAG:
                return node.value
            if tag in _SCALAR_TAGS:
                return self._scalar(node)
        elif node in self._built:
            return self._built[node]
        elif type(node) is MappingNode and tag == _MAP_TAG:
            return self._build_mapping(node)
        elif type(node) is SequenceNode and tag == _SEQ_TAG:
            return self._build_sequence(node)
        try:
            return self.construct_object(node, deep=True)
        except (ValueError, TypeError, AttributeError, LookupError, OverflowError):
            raise _unbuildable(node) from None

    def _scalar(self, node: ScalarNode) -> object:
        """A typed scalar's value; a text its type cannot take (``2024-02-30``) is an error.

        PyYAML's constructors raise ``ValueError`` (or worse) there, with the text in the
        message: it could be a password, so the error names only the line and the type.
        """
        try:
            return self.yaml_constructors[node.tag](self, node)
        except (ValueError, TypeError, AttributeError, LookupError, OverflowError):
            raise _unbuildable(node) from None

    def _undefined(self, node: Node) -> object:
        """A tag no inventory uses (``!Ref``, ``!!python/...``): refused without naming it.

        An unquoted password that starts with ``!`` is read as a tag; PyYAML's message
        would quote it.
        """
        raise ConstructorError(
            None,
            None,
            "could not determine a constructor for this tag (a value starting with '!' "
            "is a YAML tag, none of which an inventory uses); quote the value if it is text",
            node.start_mark,
        )

    def _build_mapping(self, node: MappingNode) -> dict[object, object]:
        """A dict, noting key lines, keys written twice, and merging ``<<`` keys first."""
        data: dict[object, object] = {}
        self._built[node] = data  # before the values: an alias inside may refer back
        special = not _SPECIAL_KEY_TAGS.isdisjoint([k.tag for k, _ in node.value])
        if special:
            self._note_duplicates(node, data)
            # Merge keys (`<<: *base`) go first; the mapping's own keys then override them.
            self.flatten_mapping(node)
        key_lines: dict[object, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == _STR_TAG else self.build(key_node)
            if type(key) is not str and not isinstance(key, collections.abc.Hashable):
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a key that is a list or a mapping",
                    key_node.start_mark,
                )
            line = key_node.start_mark.line + 1
            if not special and key in key_lines:
                self.lines.duplicates.append((data, str(key), line))
            # A string value (most of them) is taken as build would, without the call.
            data[key] = (
                value_node.value
                if type(value_node) is ScalarNode and value_node.tag == _STR_TAG
                else self.build(value_node)
            )
            key_lines[key] = line
        self.lines.mappings[id(data)] = (data, key_lines, node.start_mark.line + 1)
        return data

    def _note_duplicates(self, node: MappingNode, data: dict[object, object]) -> None:
        """Record keys written twice among a mapping's own keys (merged ones may repeat)."""
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag in _SPECIAL_KEY_TAGS:
                continue
            key = self.build(key_node)
            if isinstance(key, collections.abc.Hashable):
                if key in seen:
                    self.lines.duplicates.append((data, str(key), key_node.start_mark.line + 1))
                seen.add(key)

    def _build_sequence(self, node: SequenceNode) -> list[object]:
        """A list, noting each item's line."""
        data: list[object] = []
        self._built[node] = data
        data.extend(self.build(child) for child in node.value)
        item_lines = [child.start_mark.line + 1 for child in node.value]
        self.lines.sequences[id(data)] = (data, item_lines, node.start_mark.line + 1)
        return data


_LineLoader.add_constructor(None, _LineLoader._undefined)


def _unbuildable(node: Node) -> ConstructorError:
    """The error for a typed value whose text is not of its type (the text left out)."""
    kind = _KINDS.get(node.tag)
    written = f"written as {kind} that is not one" if kind else "that YAML cannot build as written"
    return ConstructorError(
        None, None, f"a value {written}; quote it if it is text", node.start_mark
    )


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
        node = loader.get_single_node()
        data = None if node is None else loader.build(node)
    finally:
        loader.dispose()
    return YamlDocument(data, loader.lines)
