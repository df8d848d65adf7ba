"""Secrets: a value that no repr, str, log line or traceback can show.

A ``Secret`` is made where a reference (``env:NAME``, ``file:PATH``) is resolved and
revealed only where the value is sent (the HTTP client). Every value ever wrapped is also
remembered, so that ``redact`` can mask it in any text a server sent back, as the last line
of defence of the logs and the report.

``redact`` masks every form a server can echo a secret in: as written; JSON-escaped
(``\\"``, ``\\\\``, ``\\/``, ``\\u00e9`` in either case); as a Python repr; URL-encoded
(``%C3%A9`` in either case, ``+`` for a space); with control characters replaced (U+FFFD)
or escaped (``\\x1b``); and base64, standard or URL-safe, padded or not, of the secret
alone or inside a longer base64 run such as ``user:password``. A secret shorter than
``SHORT`` characters is masked only where it stands as a whole token (not inside a run of
letters or digits), so that a one-letter password cannot mangle every word holding that
letter, and so give itself away; a longer one is masked wherever it appears.
"""

from __future__ import annotations

import base64
import re
import string
from collections.abc import Iterator
from typing import Final, final

__all__ = ["SHORT", "Secret", "known_secret_values", "redact", "remember"]

SHORT: Final = 8
"""Secrets shorter than this are masked only as whole tokens."""
_KNOWN: Final[set[str]] = set()
_MASK: Final = "********"
_JSON_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "/": "\\/",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}
_REPR_ESCAPES: Final = {"'": "\\'"}
_URLSAFE: Final = str.maketrans("+/", "-_")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_BASE64_CHARS: Final = frozenset(string.ascii_letters + string.digits + "+/-_")
_PERCENT_ESCAPES: Final = frozenset({"%2b", "%2f", "%3d"})
"""``+``, ``/`` and ``=`` of a base64 run, URL-encoded."""


@final
class Secret:
    """A credential, shown everywhere as ``********`` with where it came from."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, *, source: str) -> None:
        """Wrap ``value``; ``source`` says where it came from (``env:NAME``, ``file:…``)."""
        self._value = value
        self.source = source
        remember(value)

    def reveal(self) -> str:
        """The value itself: call only where it is sent."""
        return self._value

    def __repr__(self) -> str:
        """Show the source, never the value."""
        return f"Secret(source={self.source!r})"

    def __str__(self) -> str:
        """Never the value."""
        return _MASK

    def __eq__(self, other: object) -> bool:
        """Secrets are equal when their values are."""
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        """Hash the value, so equal secrets hash alike."""
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        """Refuse to be pickled: a pickle would carry the value."""
        raise TypeError("a Secret cannot be pickled")


def remember(value: str) -> None:
    """Treat ``value`` as secret too (a form derived from a secret, such as a basic-auth token)."""
    if value:
        _KNOWN.add(value)


def known_secret_values() -> frozenset[str]:
    """Every value wrapped in a Secret so far in this process."""
    return frozenset(_KNOWN)


def redact(text: str) -> str:
    """``text`` with every form of every known secret value replaced by the mask."""
    return _current().redact(text)


@final
class _Forms:
    """The patterns of one secret: as text, and in base64."""

    __slots__ = ("_base64", "_text", "atoms", "expands")

    def __init__(self, value: str) -> None:
        """Build the patterns of ``value``; a short one matches only as a whole token."""
        short = len(value) < SHORT
        before, after = (r"(?<![^\W_])", r"(?![^\W_])") if short else ("", "")
        padding = r"(?:=|%3[dD]){0,2}"
        text = [_character(ch) for ch in value]
        if after:
            text.append([after])
        encodings = [
            [*(_character(ch) for ch in form), [padding + after]]
            for form in dict.fromkeys(_base64_forms(value, short=short))
        ]
        self.atoms = (text, *encodings)
        """Each form as its characters' alternatives, for the finder's trie."""
        self._text = re.compile(before + _sequence(text))
        self._base64 = re.compile(before + "(?:" + "|".join(map(_sequence, encodings)) + ")")
        self.expands = not short
        """A long secret's base64 match is widened to the whole base64 run around it."""

    def spans_at(self, text: str, at: int) -> Iterator[tuple[int, int]]:
        """The spans of this secret's forms that start at ``at``."""
        match = self._text.match(text, at)
        if match is not None:
            yield match.span()
        match = self._base64.match(text, at)
        if match is not None:
            yield _base64_run(text, at, match.end()) if self.expands else match.span()


_Trie = dict[str, "_Trie"]


@final
class _Redactor:
    """Every form of a set of secrets, compiled: a fast finder and, per secret, exact patterns.

    The finder is one regex shaped as a trie (alternatives share their prefixes and each
    starts with a literal character, so ``re`` skips along the text by a character set):
    on a line holding no secret it costs one scan. Where it stops, each secret's own
    patterns (with the whole-token check of a short secret) decide what is masked.
    """

    __slots__ = ("_by_first", "_finder", "known", "size")

    def __init__(self, known: set[str]) -> None:
        """Compile the forms of every value in ``known``."""
        self.known = known
        self.size = len(known)
        trie: _Trie = {}
        by_first: dict[str, list[_Forms]] = {}
        for value in sorted(known, key=len, reverse=True):
            forms = _FORMS.get(value) or _FORMS.setdefault(value, _Forms(value))
            for atoms in forms.atoms:
                _insert(trie, atoms)
                for alternative in atoms[0]:
                    first = by_first.setdefault(_first_character(alternative), [])
                    if forms not in first:
                        first.append(forms)
        self._finder = re.compile(_render(trie, top=True)) if trie else None
        self._by_first = {first: tuple(forms) for first, forms in by_first.items()}
        """The secrets a match can be of, by the character it starts with."""

    def redact(self, text: str) -> str:
        """``text`` with every match masked; overlapping matches are masked as one."""
        found = None if self._finder is None else self._finder.search(text)
        if found is None:
            return text
        spans: list[tuple[int, int]] = []
        while found is not None:
            at = found.start()
            for forms in self._by_first.get(text[at], ()):
                spans += forms.spans_at(text, at)
            # On from the next character, not the match's end: another secret may start
            # inside this match and reach past it.
            found = self._finder.search(text, at + 1)  # type: ignore[union-attr]
        parts: list[str] = []
        done = 0
        for start, end in sorted(spans):
            if start >= done:
                parts += (text[done:start], _MASK)
            done = max(done, end)
        parts.append(text[done:])
        return "".join(parts)


FINDER_DEPTH: Final = 24
"""Characters of each form the finder looks for: where it stops, a secret's own patterns
decide. A prefix keeps the trie (and the recursion that renders it) shallow whatever the
length of a secret: a 64 KiB password file once made every redaction fail."""


def _insert(trie: _Trie, atoms: list[list[str]]) -> None:
    """Add the start of one form to the trie: its first character once per alternative (so
    that every branch of the finder starts with a literal), each other character, up to
    ``FINDER_DEPTH``, as one group."""
    rest = [_group(alternatives) for alternatives in atoms[1:FINDER_DEPTH]]
    for alternative in atoms[0]:
        node = trie
        for key in (alternative, *rest):
            node = node.setdefault(key, {})
        node[""] = {}  # a form ends here


def _first_character(alternative: str) -> str:
    """The character a match of ``alternative`` (a literal first, maybe escaped) starts with."""
    return alternative[1] if alternative[0] == "\\" else alternative[0]


def _render(trie: _Trie, *, top: bool = False) -> str:
    """The trie as a regex, shared prefixes written once."""
    branches = [key + _render(child) if key else "" for key, child in trie.items()]
    if len(branches) == 1:
        return branches[0]
    return "|".join(branches) if top else "(?:" + "|".join(branches) + ")"


def _sequence(atoms: list[list[str]]) -> str:
    """One form as a regex."""
    return "".join(_group(alternatives) for alternatives in atoms)


def _group(alternatives: list[str]) -> str:
    """Alternatives as one regex atom."""
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


_FORMS: dict[str, _Forms] = {}
"""Each secret's compiled forms, kept across the redactor's rebuilds: a rebuild (a secret
added) compiles only the new one (a 64 KiB secret takes ~0.8 s to compile)."""
_cache: list[_Redactor] = [_Redactor(_KNOWN)]


def _current() -> _Redactor:
    """The redactor for the secrets known now, compiled again only when one was added."""
    redactor = _cache[0]
    # The set only grows, so its size tells whether it changed (tests swap the set itself).
    if redactor.known is not _KNOWN or redactor.size != len(_KNOWN):
        redactor = _cache[0] = _Redactor(_KNOWN)
    return redactor


def _base64_forms(value: str, *, short: bool) -> Iterator[str]:
    """The base64 forms of ``value`` (unpadded), standard and URL-safe.

    A long value is also found inside a longer base64 run (``user:password``, whatever the
    user): for each of the three offsets the value can start at within a 3-byte group, the
    run holds the encoding of the value's bytes that fill whole groups, whatever comes
    before or after them.
    """
    raw = value.encode()
    forms = [base64.b64encode(raw).decode().rstrip("=")]
    if not short:
        for skip in range(3):
            whole = raw[skip:][: (len(raw) - skip) // 3 * 3]
            if len(whole) >= 6:
                forms.append(base64.b64encode(whole).decode())
    if _BASE64.fullmatch(value):  # a remembered basic-auth token: also its other spellings
        forms.append(value.rstrip("="))
    for form in forms:
        yield form
        yield form.translate(_URLSAFE)


def _character(ch: str) -> list[str]:
    """The alternatives for one character: as written, JSON-escaped, repr-escaped,
    URL-encoded, replaced by U+FFFD or escaped as ``\\x1b`` (a letter or digit is only ever
    itself). Each alternative starts with a literal character."""
    if ch.isascii() and ch.isalnum():
        return [ch]
    literals = {ch, _JSON_ESCAPES.get(ch, ch), _REPR_ESCAPES.get(ch, ch)}
    if ch == " ":
        literals.add("+")
    if not ch.isprintable():
        literals |= {"\N{REPLACEMENT CHARACTER}", ch.encode("unicode_escape").decode()}
    code = ord(ch)
    patterns = {re.escape(literal) for literal in literals}
    if code > 0xFFFF:  # JSON writes it as a surrogate pair
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        patterns.add(rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}")
        patterns.add(rf"\\U{_hex(code, 8)}")
    else:
        patterns.add(rf"\\u{_hex(code, 4)}")
    if code < 0x100:
        patterns.add(rf"\\x{_hex(code, 2)}")
    patterns.add("".join(f"%{_hex(byte, 2)}" for byte in ch.encode()))
    return sorted(patterns, key=len, reverse=True)


def _hex(number: int, width: int) -> str:
    """``number`` in hex, matching its letters in either case."""
    return "".join(
        f"[{digit}{digit.upper()}]" if digit.isalpha() else digit for digit in f"{number:0{width}x}"
    )


def _base64_run(text: str, start: int, end: int) -> tuple[int, int]:
    """``start, end`` widened to the whole base64 run around them, padding included."""
    while start > 0:
        if text[start - 1] in _BASE64_CHARS or text[start - 1 : start + 1] == "\\/":
            start -= 1  # JSON writes / as \/
        elif text[max(0, start - 3) : start].lower() in _PERCENT_ESCAPES:
            start -= 3
        else:
            break
    while end < len(text):
        if text[end] in _BASE64_CHARS or text[end] == "=":
            end += 1
        elif text[end : end + 2] == "\\/":
            end += 2
        elif text[end : end + 3].lower() in _PERCENT_ESCAPES:
            end += 3
        else:
            break
    return start, end
