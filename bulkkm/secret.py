"""Secrets: a value that no repr, str, log line or traceback can show.

A ``Secret`` is made where a reference (``env:NAME``, ``file:PATH``) is resolved and
revealed only where the value is sent (the HTTP client). Every value ever wrapped is also
remembered, so the logging redaction processor can scrub it as a last line of defence.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["Secret", "known_secret_values", "redact", "remember"]

_KNOWN: Final[set[str]] = set()
_MASK: Final = "********"


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
    """Replace every known secret value in ``text`` by the mask."""
    for value in _KNOWN:
        if value in text:
            text = text.replace(value, _MASK)
    return text
