"""API tokens: scopes, how a token is made, and the only form stored (its sha256).

Scopes (what each may do; ``admin`` holds every other):

- ``read``: list inventories and runs, read a run, its plan, report and events;
- ``operate``: ``read``, plus start, cancel, retry and discard runs;
- ``approve``: ``read``, plus approve (or discard) a run waiting for approval.

``approve`` does not imply ``operate``, nor the reverse: separation of duties, so that the
change board's token cannot start changes and an operator's cannot approve its own. One
``admin`` token can do both, for a small team that wants it.

A token is 256 random bits (``bkm_`` + URL-safe base64, so secret scanners can spot one).
Only its sha256 is stored: a high-entropy secret needs no slow hash, and a lookup by hash
reveals nothing an attacker can use. The comparison after the lookup is constant-time anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
from enum import StrEnum
from typing import Final

from bulkkm.errors import UsageError

__all__ = ["Principal", "Scope", "check_name", "hash_token", "new_token", "same_hash"]

PREFIX: Final = "bkm_"
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class Scope(StrEnum):
    """What a token may do."""

    READ = "read"
    OPERATE = "operate"
    APPROVE = "approve"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        """Whether a token of this scope may do what ``needed`` guards."""
        return needed in _GRANTS[self]


_GRANTS: Final[dict[Scope, frozenset[Scope]]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.OPERATE: frozenset({Scope.READ, Scope.OPERATE}),
    Scope.APPROVE: frozenset({Scope.READ, Scope.APPROVE}),
    Scope.ADMIN: frozenset(Scope),
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who made a request: the token's name and scope (never the token)."""

    name: str
    scope: Scope


def new_token() -> str:
    """A fresh token: shown once to whoever creates it, never stored."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token: its sha256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time equality of two hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def check_name(name: str) -> str:
    """A token's name, checked: letters, digits, ``. _ @ -``, at most 64."""
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"token name {name!r}: letters, digits and . _ @ - only, 1 to 64, "
            "starting with a letter or digit"
        )
    return name
