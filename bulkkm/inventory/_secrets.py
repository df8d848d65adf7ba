"""Password references (``env:NAME``, ``file:PATH``): checked when read, resolved once each.

No message made here shows a password: a literal is described, never quoted, and a
reference is named by its variable or path only.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from bulkkm.inventory._format import KeyPath
from bulkkm.inventory._issues import Issues, describe_type, some_names
from bulkkm.secret import Secret

__all__ = ["SecretRef", "SecretResolver", "parse_secret"]

_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIRST_LINE_LIMIT: Final = 64 * 1024
_NEAR_REFERENCE: Final = re.compile(r"\s*(env|file)\s*:", re.IGNORECASE)
"""``ENV:NAME``, `` env:NAME``, ``file :PATH``: a reference mistyped (exact forms match first)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SecretRef:
    """A password as written: a reference to resolve, or a literal already wrapped."""

    kind: Literal["env", "file", "literal"]
    target: str = ""
    """The variable name (``env``) or the path as written (``file``)."""
    literal: Secret | None = None


def parse_secret(
    value: object, path: KeyPath, issues: Issues, *, allow_plaintext: bool
) -> SecretRef | None:
    """Read a password setting; None (with a problem recorded) when it is not acceptable."""
    if not isinstance(value, str):
        issues.add(
            path,
            f"expected a secret reference (env:NAME or file:PATH), got {describe_type(value)}",
        )
        return None
    if value.startswith("env:"):
        name = value[4:]
        if not _ENV_NAME.fullmatch(name):
            issues.add(path, "env: needs an environment variable name (letters, digits, _)")
            return None
        return SecretRef(kind="env", target=name)
    if value.startswith("file:"):
        if not value[5:].strip() or "\x00" in value:
            issues.add(path, "file: needs a path (without NUL characters)")
            return None
        return SecretRef(kind="file", target=value[5:])
    if not value:
        issues.add(path, "the password is empty")
        return None
    typo = _NEAR_REFERENCE.match(value)
    if typo:
        # Taken as a literal, `ENV:NAME` would be sent as the password itself.
        issues.add(
            path,
            f"looks like a secret reference but is not one: write {typo[1].lower()}: "
            "in lower case, with no space before or after it",
        )
        return None
    if not allow_plaintext:
        issues.add(
            path,
            "a literal password is refused: write env:NAME or file:PATH "
            "(or set allow_plaintext_secrets: true)",
        )
        return None
    return SecretRef(kind="literal", literal=Secret(value, source="literal"))


class SecretResolver:
    """Resolves references, each variable looked up and each file read once per load."""

    __slots__ = ("_base_dir", "_cache", "_environ", "_failures", "_written")

    def __init__(self, environ: Mapping[str, str], base_dir: Path) -> None:
        """Resolve against ``environ``, and ``file:`` paths relative to ``base_dir``."""
        self._environ = environ
        self._base_dir = base_dir
        self._cache: dict[str, Secret | str] = {}
        self._written: dict[tuple[str, str], Secret | str] = {}
        self._failures: dict[KeyPath, tuple[str, list[str]]] = {}

    def resolve(self, ref: SecretRef, path: KeyPath, cluster: str) -> Secret | None:
        """The secret ``ref`` (written at ``path``) names for ``cluster``; None if it fails."""
        if ref.literal is not None:
            return ref.literal
        # Keyed as written first: at 10,000 clusters sharing one reference, building its
        # path once per cluster cost more than the rest of resolving the secret.
        result = self._written.get((ref.kind, ref.target))
        if result is None:
            if ref.kind == "env":
                key = f"env:{ref.target}"
            else:
                file = self._base_dir / os.path.expanduser(ref.target)
                key = f"file:{file}"
            result = self._cache.get(key)
            if result is None:
                result = (
                    self._env(ref.target) if ref.kind == "env" else self._file(ref.target, file)
                )
                self._cache[key] = result
            self._written[ref.kind, ref.target] = result
        if isinstance(result, Secret):
            return result
        self._failures.setdefault(path, (result, []))[1].append(cluster)
        return None

    def report(self, issues: Issues) -> None:
        """Record one problem per reference that failed, naming the clusters that need it."""
        for path, (message, clusters) in self._failures.items():
            issues.add(path, f"{message} (needed by {some_names('cluster', clusters)})")

    def _env(self, name: str) -> Secret | str:
        """The variable's value, or why there is none."""
        value = self._environ.get(name)
        if value is None:
            return f"environment variable {name} is not set"
        if not value:
            return f"environment variable {name} is empty"
        return Secret(value, source=f"env:{name}")

    @staticmethod
    def _file(written: str, file: Path) -> Secret | str:
        """The first line of the file, or why it cannot be had."""
        try:
            # Looked at before it is opened: opening a named pipe nobody writes would wait
            # forever, and a device (/dev/zero) has no first line worth the name.
            if not stat.S_ISREG(file.stat().st_mode):
                return f"the password file {written!r} is not a regular file"
            with file.open("rb") as stream:
                first = stream.readline(_FIRST_LINE_LIMIT + 2)  # and its \r\n
        except OSError as exc:
            return f"cannot read the password file {written!r}: {exc.strerror or exc}"
        if len(first.rstrip(b"\r\n")) > _FIRST_LINE_LIMIT:
            return (
                f"the password file {written!r} has a first line longer than "
                f"{_FIRST_LINE_LIMIT // 1024} KiB: is it the password file?"
            )
        try:
            value = first.decode("utf-8-sig").rstrip("\r\n")
        except UnicodeDecodeError:
            return f"the password file {written!r} is not UTF-8 text"
        if not value:
            return f"the password file {written!r} is empty (its first line is the password)"
        return Secret(value, source=f"file:{written}")
