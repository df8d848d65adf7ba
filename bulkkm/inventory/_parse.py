"""Checking the file's data against the format, layer by layer, into ``_layers`` values.

Every problem is recorded in ``Issues`` and parsing carries on, so that one pass finds
them all. Nothing here looks outside the data: secrets and TLS files are resolved later,
for the clusters that use them.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import re
from collections.abc import Callable, Mapping
from datetime import time
from typing import Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bulkkm.inventory._format import (
    CLUSTER_KEYS,
    CLUSTER_ONLY_KEYS,
    GLOB_CHARS,
    GROUP_KEYS,
    LIMITS_KEYS,
    MAX_WAVE,
    NAME_RE,
    REGION_RE,
    ROLLOUT_KEYS,
    SERVER_KEYS,
    SETTINGS_KEYS,
    SVM_KEYS,
    SVM_NAME_RE,
    TIME_RE,
    TLS_KEYS,
    TOP_KEYS,
    VERSION,
    WINDOW_KEYS,
    KeyPath,
    render_path,
)
from bulkkm.inventory._issues import Issues, describe_type
from bulkkm.inventory._layers import (
    EMPTY_SETTINGS,
    INVALID,
    INVALID_SETTINGS,
    At,
    ClusterSpec,
    Document,
    Field,
    LimitsLayer,
    RetireList,
    Selection,
    ServerList,
    ServerSpec,
    Settings,
    SvmSpec,
    TlsLayer,
)
from bulkkm.inventory._model import Rollout, SelectorKind
from bulkkm.inventory._secrets import SecretRef, parse_secret
from bulkkm.rollout import DAYS, WaveSize, Window, check_order, parse_waves
from bulkkm.servers import normalize_server, split_host_port

__all__ = ["parse_document"]

T = TypeVar("T")

MAX_PRIMARIES: Final = 4
MAX_SECONDARIES: Final = 3
MAX_LIMIT: Final = 1_000_000
"""The largest concurrency, rate or timeout: beyond it, a typo rather than a plan."""
_HTTPS_PORT: Final = 443
_GLOB_OK: Final = re.compile(r"[A-Za-z0-9_.\-*?\[\]!]+")
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4: Final = re.compile(rf"({_OCTET}(?:\.{_OCTET}){{3}})(?::([0-9]{{1,5}}))?")
"""An IPv4 address as ``split_host_port`` would write it back (no leading zero), and a port:
such an address needs no parsing (``ipaddress`` costs most of a cluster's check)."""

# Where a key that is unknown at one level belongs, for a better hint than "unknown".
_UNDER_TLS: Final = dict.fromkeys(TLS_KEYS, "under 'tls:'")
_UNDER_LIMITS: Final = dict.fromkeys(LIMITS_KEYS, "under 'limits:'")
_UNDER_WINDOW: Final = dict.fromkeys(WINDOW_KEYS, "under 'window:'")
_UNDER_ROLLOUT: Final = dict.fromkeys(ROLLOUT_KEYS, "under 'rollout:' at the top of the file")
_SETTINGS_HINTS: Final = {
    **_UNDER_TLS,
    **_UNDER_LIMITS,
    **_UNDER_WINDOW,
    **_UNDER_ROLLOUT,
    "server": "in an entry of 'key_servers:'",
    "secondary_key_servers": "in an entry of 'key_servers:'",
    "rollout": "at the top of the file",
}
_INHERITED_HINTS: Final = {
    **_SETTINGS_HINTS,
    **dict.fromkeys(CLUSTER_ONLY_KEYS, "in a cluster entry (it is not inherited)"),
    # Only defaults refuse it (groups take it).
    "wave": "in a group or a cluster (in defaults it would pin every cluster to one wave)",
}
_CLUSTER_HINTS: Final = {
    **_SETTINGS_HINTS,
    "allow_plaintext_secrets": "at the top of the file",
    "version": "at the top of the file",
}
_TOP_HINTS: Final = {
    **dict.fromkeys(SETTINGS_KEYS, "under 'defaults:' or in a cluster"),
    **dict.fromkeys(CLUSTER_ONLY_KEYS, "in a cluster entry"),
    **_UNDER_WINDOW,
    **_UNDER_ROLLOUT,
    "wave": "in a group or a cluster",
}
_ROLLOUT_HINTS: Final = {"window": "under 'defaults:', in a group or in a cluster"}
_WINDOW_EXAMPLE: Final = '{days: [sat, sun], start: "01:00", end: "05:00", tz: Europe/Paris}'
_DAY_NUMBERS: Final = {name: number for number, name in enumerate(DAYS)}


def parse_document(data: Mapping[object, object], issues: Issues) -> Document:
    """Check the top-level mapping and everything in it; problems go to ``issues``."""
    return _Parser(issues).document(data)


def _show(value: str, limit: int = 60) -> str:
    """A quoted value for a message, cut short when long."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _unknown_key(key: str, allowed: tuple[str, ...], hints: Mapping[str, str]) -> str:
    """The message for a key the format does not have, with the best hint there is."""
    if key in hints:  # a key of the format, at the wrong level
        return f"unknown key {_show(key)} here; it belongs {hints[key]}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key {_show(key)}; did you mean {close[0]!r}?"
    return f"unknown key {_show(key)}; expected one of {', '.join(allowed)}"


def _missing(key: str, written: Mapping[object, object], allowed: tuple[str, ...]) -> bool:
    """Whether required ``key`` is missing and no unknown key written is a near miss of it.

    A near miss has already been reported with a "did you mean"; saying the key is also
    missing would report one mistake twice.
    """
    if key in written:
        return False
    return not any(
        isinstance(other, str)
        and other not in allowed
        and difflib.get_close_matches(other, allowed, n=1) == [key]
        for other in written
    )


@functools.cache
def _zone_names() -> dict[str, str]:
    """The IANA zone names known here, by their lower-case form (for suggestions only)."""
    return {name.lower(): name for name in available_timezones()}


@functools.lru_cache(maxsize=512)
def _zone_problem(name: str) -> str | None:
    """Why ``name`` is not a time zone ``zoneinfo`` knows, with the nearest name; or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a directory, say
        pass
    else:
        return None
    known = _zone_names()
    lowered = name.strip().lower()
    close = [known[lowered]] if lowered in known else difflib.get_close_matches(lowered, known, n=1)
    hint = f"; did you mean {known.get(close[0], close[0])!r}?" if close else ""
    return f"unknown time zone {_show(name)}: write an IANA name such as Europe/Paris{hint}"


def _window_key(value: object) -> tuple[object, ...] | None:
    """A window as written, as a hashable key, when it is plain strings; None otherwise."""
    if not isinstance(value, dict) or len(value) != len(WINDOW_KEYS):
        return None
    days = value.get("days")
    rest = (value.get("start"), value.get("end"), value.get("tz"))
    if not isinstance(days, list) or not all(isinstance(v, str) for v in (*days, *rest)):
        return None
    return (tuple(days), *rest)


def _glob_problem(pattern: str) -> str | None:
    """Why a glob is not usable on SVM names, or None: bad characters or an open ``[``."""
    if not _GLOB_OK.fullmatch(pattern):
        return "may hold only letters, digits, _, -, . and the glob characters * ? [ ] !"
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                j += 1
            if j >= len(pattern):
                return "has a '[' that is never closed"
            i = j
        i += 1
    try:
        re.compile(fnmatch.translate(pattern))
    except re.error as exc:  # a range such as [z-a]
        return f"does not compile ({exc})"
    return None


class _Parser:
    """One pass over the data; holds the problems and the file-wide switches."""

    __slots__ = (
        "_allow_plaintext",
        "_issues",
        "_literals",
        "_patterns",
        "_servers",
        "_windows",
        "_zones",
    )

    def __init__(self, issues: Issues) -> None:
        """Report to ``issues``."""
        self._issues = issues
        self._allow_plaintext = False
        self._literals: list[KeyPath] = []
        # A large fleet repeats the same names thousands of times: each valid one is
        # checked (and normalised) once.
        self._servers: dict[str, str] = {}
        self._patterns: set[str] = set()
        # The same window written on thousands of clusters is checked and built once.
        self._windows: dict[tuple[object, ...], Window] = {}
        self._zones: set[str] = set()

    def _add(self, path: KeyPath, message: str) -> None:
        """Record one problem."""
        self._issues.add(path, message)

    # -- shapes ------------------------------------------------------------------------

    def _mapping(
        self,
        value: object,
        path: KeyPath,
        allowed: tuple[str, ...],
        what: str,
        hints: Mapping[str, str],
    ) -> dict[str, object] | None:
        """The known keys of a mapping; unknown keys and a non-mapping are reported."""
        if not isinstance(value, dict):
            self._add(path, f"expected {what}, got {describe_type(value)}")
            return None
        known: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self._add(
                    (*path, str(key)), f"the key {key!r} is {describe_type(key)}; keys are names"
                )
            elif key in allowed:
                known[key] = item
            else:
                self._add((*path, key), _unknown_key(key, allowed, hints))
        return known

    def _list(self, value: object, path: KeyPath, what: str) -> list[object] | None:
        """``value`` when it is a list, else None (reported as ``expected a list of …``)."""
        if isinstance(value, list):
            return value
        self._add(path, f"expected a list of {what}, got {describe_type(value)}")
        return None

    def _string(self, value: object, path: KeyPath, what: str = "a string") -> str | None:
        """A non-empty string, else None (reported)."""
        if not isinstance(value, str):
            self._add(path, f"expected {what}, got {describe_type(value)}")
            return None
        if not value.strip():
            self._add(path, f"expected {what}, got an empty string")
            return None
        return value

    def _flag(self, value: object, path: KeyPath) -> Field[bool]:
        """A boolean setting."""
        if isinstance(value, bool):
            return At(value, path)
        self._add(path, f"expected true or false, got {describe_type(value)}")
        return INVALID

    def _number(self, value: object, path: KeyPath, *, whole: bool) -> float | None:
        """A positive number up to MAX_LIMIT (a whole one if ``whole``); booleans are not."""
        kind = "a whole number" if whole else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._add(path, f"expected {kind} greater than 0, got {describe_type(value)}")
            return None
        # Compared before any conversion: float() of a huge int would overflow.
        if not 0 < value <= MAX_LIMIT or (whole and value != int(value)):
            self._add(
                path, f"expected {kind} greater than 0 and at most {MAX_LIMIT}, got {value!r}"
            )
            return None
        return float(value)

    # -- the document ------------------------------------------------------------------

    def document(self, data: Mapping[object, object]) -> Document:
        """The whole file."""
        top = self._mapping(dict(data), (), TOP_KEYS, "a mapping", _TOP_HINTS) or {}
        self._version(top)
        if "allow_plaintext_secrets" in top:
            allow = self._flag(top["allow_plaintext_secrets"], ("allow_plaintext_secrets",))
            self._allow_plaintext = isinstance(allow, At) and allow.value
        defaults = EMPTY_SETTINGS
        if "defaults" in top:
            defaults = self._inherited(top["defaults"], ("defaults",), "defaults", SETTINGS_KEYS)
        groups = self._groups(top["groups"]) if "groups" in top else {}
        clusters: tuple[ClusterSpec, ...] = ()
        if "clusters" not in top:
            self._add(("clusters",), "clusters is required: the list of clusters to work on")
        else:
            clusters = self._clusters(top["clusters"], groups)
        return Document(
            defaults=defaults,
            groups=groups,
            clusters=clusters,
            rollout=self._rollout(top["rollout"]) if "rollout" in top else Rollout(),
            literal_secrets=tuple(self._literals),
        )

    def _version(self, top: Mapping[str, object]) -> None:
        """``version: 1``, required."""
        if "version" not in top:
            self._add(("version",), f"version is required: write 'version: {VERSION}'")
            return
        version = top["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            self._add(("version",), f"expected the number {VERSION}, got {describe_type(version)}")
        elif version != VERSION:
            self._add(
                ("version",),
                f"unsupported version {version}: this bulkkm reads version {VERSION}",
            )

    def _groups(self, value: object) -> dict[str, Settings]:
        """The ``groups`` mapping: name -> settings."""
        path: KeyPath = ("groups",)
        if not isinstance(value, dict):
            self._add(
                path, f"expected a mapping of group names to settings, got {describe_type(value)}"
            )
            return {}
        groups: dict[str, Settings] = {}
        for name, body in value.items():
            if not isinstance(name, str):
                self._add(
                    (*path, str(name)),
                    f"the group name {name!r} is {describe_type(name)}; write a name",
                )
                continue
            if not NAME_RE.fullmatch(name):
                self._add(
                    (*path, name),
                    f"{_show(name)} is not a valid group name (letters, digits, _, -, .)",
                )
            groups[name] = self._inherited(body, (*path, name), f"group {name!r}", GROUP_KEYS)
        return groups

    def _inherited(
        self, value: object, path: KeyPath, what: str, allowed: tuple[str, ...]
    ) -> Settings:
        """``defaults`` or a group: only the inheritable settings (``allowed``)."""
        known = self._mapping(
            value, path, allowed, f"a mapping of settings for {what}", _INHERITED_HINTS
        )
        return INVALID_SETTINGS if known is None else self._settings(known, path)

    def _clusters(self, value: object, groups: Mapping[str, Settings]) -> tuple[ClusterSpec, ...]:
        """The ``clusters`` list, with names and addresses unique and groups existing."""
        items = self._list(value, ("clusters",), "clusters")
        if items is None:
            return ()
        if not items:
            self._add(("clusters",), "the list of clusters is empty")
        clusters: list[ClusterSpec] = []
        names: dict[str, KeyPath] = {}
        addresses: dict[tuple[str, int], KeyPath] = {}
        for index, item in enumerate(items):
            path: KeyPath = ("clusters", index)
            cluster = self._cluster(item, path, groups)
            if cluster is None:
                continue
            if cluster.name is not None:
                first = names.setdefault(cluster.name, path)
                if first != path:
                    self._add(
                        (*path, "name"),
                        f"cluster name {cluster.name!r} is also used by {render_path(first)}",
                    )
            if cluster.address is not None:
                first = addresses.setdefault(cluster.address, path)
                if first != path:
                    self._add(
                        (*path, "address"),
                        f"this address is also the address of {render_path(first)}",
                    )
            clusters.append(cluster)
        return tuple(clusters)

    def _cluster(
        self, value: object, path: KeyPath, groups: Mapping[str, Settings]
    ) -> ClusterSpec | None:
        """One cluster entry."""
        known = self._mapping(
            value,
            path,
            CLUSTER_KEYS,
            "a cluster (a mapping with name: and address:)",
            _CLUSTER_HINTS,
        )
        if known is None:
            return None
        name: str | None = None
        if "name" not in known:
            self._add((*path, "name"), "name is required")
        else:
            name = self._string(known["name"], (*path, "name"), "a cluster name")
            if name is not None and not NAME_RE.fullmatch(name):
                self._add(
                    (*path, "name"),
                    f"{_show(name)} is not a valid cluster name (letters, digits, _, -, .)",
                )
                name = None
        address = None
        if "address" not in known:
            self._add((*path, "address"), "address is required (host, host:port, [v6]:port)")
        else:
            address = self._address(known["address"], (*path, "address"))
        member_of: tuple[str, ...] = ()
        if "groups" in known:
            member_of = self._memberships(known["groups"], (*path, "groups"), groups)
        return ClusterSpec(
            path=path,
            name=name,
            address=address,
            groups=member_of,
            settings=self._settings(known, path),
        )

    def _address(self, value: object, path: KeyPath) -> tuple[str, int] | None:
        """A cluster's management address: host and port (443 by default)."""
        text = self._string(value, path, "a host name or IP address")
        if text is None:
            return None
        if "://" in text:
            self._add(path, f"{_show(text)} has a scheme: always https; write the host only")
            return None
        canonical = _CANONICAL_IPV4.fullmatch(text)
        if canonical is not None and 0 < int(canonical[2] or _HTTPS_PORT) < 65536:
            return canonical[1], int(canonical[2] or _HTTPS_PORT)
        try:
            return split_host_port(text, _HTTPS_PORT)
        except ValueError as exc:
            self._add(path, f"not a valid address: {exc}")
            return None

    def _memberships(
        self, value: object, path: KeyPath, groups: Mapping[str, Settings]
    ) -> tuple[str, ...]:
        """A cluster's ``groups`` list: the names that exist, each once."""
        items = self._list(value, path, "group names")
        if items is None:
            return ()
        member_of: list[str] = []
        for index, item in enumerate(items):
            name = self._string(item, (*path, index), "a group name")
            if name is None:
                continue
            if name not in groups:
                close = difflib.get_close_matches(name, list(groups), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else " under 'groups:'"
                self._add((*path, index), f"there is no group {_show(name)}{hint}")
            elif name in member_of:
                self._add((*path, index), f"group {name!r} is listed twice")
            else:
                member_of.append(name)
        return tuple(member_of)

    # -- settings ----------------------------------------------------------------------

    def _settings(self, known: Mapping[str, object], path: KeyPath) -> Settings:
        """The inheritable settings present in a layer's (already filtered) keys."""
        # Only the keys written are read, in the order of the fields: a cluster usually
        # writes one or two of them, and this runs once per cluster.
        present = [key for key in _SETTINGS_READERS if key in known]
        if not present:
            return EMPTY_SETTINGS
        fields = {key: _SETTINGS_READERS[key](self, known[key], (*path, key)) for key in present}
        return Settings(**fields)  # type: ignore[arg-type]  # each reader returns its field's type

    @staticmethod
    def _optional(
        known: Mapping[str, object],
        path: KeyPath,
        key: str,
        read: Callable[[object, KeyPath], Field[T]],
    ) -> Field[T]:
        """``read`` the key when the layer has it; None when it does not."""
        return read(known[key], (*path, key)) if key in known else None

    def _username(self, value: object, path: KeyPath) -> Field[str]:
        """The ONTAP user name."""
        text = self._string(value, path, "a user name")
        return INVALID if text is None else At(text, path)

    def _password(self, value: object, path: KeyPath) -> Field[SecretRef]:
        """A password reference; literals only where allowed (and then remembered)."""
        ref = parse_secret(value, path, self._issues, allow_plaintext=self._allow_plaintext)
        if ref is None:
            return INVALID
        if ref.kind == "literal":
            self._literals.append(path)
        return At(ref, path)

    def _tls(self, value: object, path: KeyPath) -> TlsLayer:
        """The ``tls`` mapping; when it is not a mapping every key counts as invalid."""
        known = self._mapping(value, path, TLS_KEYS, "a mapping of TLS settings", {})
        if known is None:
            return TlsLayer(
                verify=INVALID, ca_file=INVALID, client_cert=INVALID, client_key=INVALID
            )

        def file(key: str) -> Field[str]:
            """One of the file paths."""
            if key not in known:
                return None
            text = self._string(known[key], (*path, key), "a file path")
            if text is not None and "\x00" in text:
                self._add((*path, key), "a file path cannot contain a NUL character")
                text = None
            return INVALID if text is None else At(text, (*path, key))

        return TlsLayer(
            verify=self._flag(known["verify"], (*path, "verify")) if "verify" in known else None,
            ca_file=file("ca_file"),
            client_cert=file("client_cert"),
            client_key=file("client_key"),
        )

    def _limits(self, value: object, path: KeyPath) -> LimitsLayer:
        """The ``limits`` mapping; when it is not a mapping every key counts as invalid."""
        known = self._mapping(value, path, LIMITS_KEYS, "a mapping of limits", {})
        if known is None:
            return LimitsLayer(concurrency=INVALID, rate=INVALID, timeout=INVALID)
        concurrency: Field[int] = None
        if "concurrency" in known:
            number = self._number(known["concurrency"], (*path, "concurrency"), whole=True)
            concurrency = INVALID if number is None else At(int(number), (*path, "concurrency"))
        rate: Field[float | None] = None
        if "rate" in known:
            if known["rate"] is None:  # written as null: no rate limit, whatever is inherited
                rate = At(None, (*path, "rate"))
            else:
                number = self._number(known["rate"], (*path, "rate"), whole=False)
                rate = INVALID if number is None else At(float(number), (*path, "rate"))
        timeout: Field[float] = None
        if "timeout" in known:
            number = self._number(known["timeout"], (*path, "timeout"), whole=False)
            timeout = INVALID if number is None else At(float(number), (*path, "timeout"))
        return LimitsLayer(concurrency=concurrency, rate=rate, timeout=timeout)

    # -- key servers -------------------------------------------------------------------

    def _server_name(self, value: object, path: KeyPath) -> str | None:
        """A key server name, normalised (``host:port``, port 5696 implied)."""
        if isinstance(value, str) and value in self._servers:
            return self._servers[value]
        text = self._string(value, path, "a key server name (host or host:port)")
        if text is None:
            return None
        if "://" in text:
            self._add(path, f"{_show(text)} has a scheme: write the host (and port) only")
            return None
        try:
            server = self._servers[text] = normalize_server(text)
        except ValueError as exc:
            self._add(path, f"not a valid key server: {exc}")
            return None
        return server

    def _server_list(self, value: object, path: KeyPath) -> Field[ServerList]:
        """A ``key_servers`` list: at most 4, no name twice (secondaries included)."""
        items = self._list(value, path, "key servers")
        if items is None:
            return INVALID
        valid = True
        if len(items) > MAX_PRIMARIES:
            self._add(
                path,
                f"{len(items)} key servers: ONTAP allows at most {MAX_PRIMARIES} per key manager",
            )
            valid = False
        entries: list[ServerSpec] = []
        seen: dict[str, KeyPath] = {}
        for index, item in enumerate(items):
            spec, names = self._server(item, (*path, index))
            for name, name_path in names:
                first = seen.setdefault(name, name_path)
                if first != name_path:
                    self._add(name_path, f"{name} is listed twice (also at {render_path(first)})")
                    valid = False
            if spec is None:
                valid = False
            else:
                entries.append(spec)
        return At(ServerList(entries=tuple(entries)), path) if valid else INVALID

    def _server(
        self, value: object, path: KeyPath
    ) -> tuple[ServerSpec | None, list[tuple[str, KeyPath]]]:
        """One key server entry (None if invalid) and the valid names it uses, with paths."""
        if isinstance(value, str):
            server = self._server_name(value, path)
            if server is None:
                return None, []
            return ServerSpec(path=path, server=server), [(server, path)]
        known = self._mapping(
            value,
            path,
            SERVER_KEYS,
            "a key server name or a mapping with server:",
            dict.fromkeys(
                ("key_servers", "retire_servers"),
                "on the key manager, not in one of its key servers",
            ),
        )
        if known is None:
            return None, []
        valid = True
        server = None
        if "server" not in known:
            self._add((*path, "server"), "server is required")
            valid = False
        else:
            server = self._server_name(known["server"], (*path, "server"))
        names: list[tuple[str, KeyPath]] = []
        if server is not None:
            names.append((server, (*path, "server")))
        secondaries: list[str] = []
        if "secondary_key_servers" in known:
            spath: KeyPath = (*path, "secondary_key_servers")
            items = self._list(known["secondary_key_servers"], spath, "key server names")
            if items is None:
                valid = False
            else:
                if len(items) > MAX_SECONDARIES:
                    self._add(
                        spath,
                        f"{len(items)} secondary key servers: ONTAP allows at most "
                        f"{MAX_SECONDARIES} per key server",
                    )
                    valid = False
                for index, item in enumerate(items):
                    name = self._server_name(item, (*spath, index))
                    if name is None:
                        valid = False
                    else:
                        secondaries.append(name)
                        names.append((name, (*spath, index)))
        password: Field[SecretRef] = None
        if "password" in known:
            password = self._password(known["password"], (*path, "password"))
        if server is None or not valid or password is INVALID:
            return None, names
        spec = ServerSpec(
            path=path, server=server, secondaries=tuple(secondaries), password=password
        )
        return spec, names

    def _retire_list(self, value: object, path: KeyPath) -> Field[RetireList]:
        """A ``retire_servers`` list: at most 4 names, each once; empty means none.

        Names only: ``migrate`` deletes a primary by its name, and ONTAP removes its
        secondaries with it, so ``secondary_key_servers`` or a KMIP password would mean
        nothing here. The long form is refused with the name to write instead, rather than
        accepted and half ignored.
        """
        items = self._list(value, path, "key server names to retire")
        if items is None:
            return INVALID
        valid = True
        if len(items) > MAX_PRIMARIES:
            self._add(
                path,
                f"{len(items)} servers to retire: a key manager has at most {MAX_PRIMARIES} "
                "primary key servers",
            )
            valid = False
        entries: list[At[str]] = []
        seen: dict[str, KeyPath] = {}
        for index, item in enumerate(items):
            item_path: KeyPath = (*path, index)
            if isinstance(item, dict):
                server = item.get("server")
                shown = f" {_show(server)}" if isinstance(server, str) else ""
                self._add(
                    item_path,
                    f"expected a key server name, got a mapping: write just the name{shown} "
                    "(retire_servers takes names only; a primary's secondary key servers "
                    "are removed with it)",
                )
                valid = False
                continue
            name = self._server_name(item, item_path)
            if name is None:
                valid = False
                continue
            first = seen.setdefault(name, item_path)
            if first != item_path:
                self._add(item_path, f"{name} is listed twice (also at {render_path(first)})")
                valid = False
                continue
            entries.append(At(name, item_path))
        return At(RetireList(entries=tuple(entries)), path) if valid else INVALID

    # -- SVM selection -----------------------------------------------------------------

    def _pattern(self, value: object, path: KeyPath) -> str | None:
        """An SVM name, or a glob over SVM names."""
        if isinstance(value, str) and value in self._patterns:
            return value
        text = self._string(value, path, "an SVM name or glob")
        if text is None:
            return None
        if GLOB_CHARS.isdisjoint(text):
            if not SVM_NAME_RE.fullmatch(text):
                self._add(path, f"{_show(text)} is not a valid SVM name (letters, digits, _, -, .)")
                return None
        else:
            problem = _glob_problem(text)
            if problem is not None:
                self._add(path, f"the glob {_show(text)} {problem}")
                return None
        self._patterns.add(text)
        return text

    def _selection(self, value: object, path: KeyPath) -> Field[Selection]:
        """``svms``: ``all``, or a list of names, globs and ``{name, key_servers}`` entries."""
        if value == "all":
            return At(
                Selection(entries=(SvmSpec(path=path, kind=SelectorKind.ALL, pattern="*"),)), path
            )
        if isinstance(value, str):
            self._add(
                path,
                f"expected 'all' or a list of SVM names, globs or {{name, key_servers}} "
                f"entries, got the string {_show(value)}",
            )
            return INVALID
        items = self._list(value, path, "SVM names, globs or {name, key_servers} entries")
        if items is None:
            return INVALID
        entries: list[SvmSpec] = []
        complete = True
        seen: dict[str, KeyPath] = {}
        for index, item in enumerate(items):
            entry = self._svm_entry(item, (*path, index))
            if entry is None:
                complete = False
                continue
            first = seen.setdefault(entry.pattern, entry.path)
            if first != entry.path:
                self._add(
                    entry.path,
                    f"SVM {entry.pattern!r} is listed twice (also at {render_path(first)})",
                )
                complete = False
                continue
            entries.append(entry)
        return At(Selection(entries=tuple(entries), complete=complete), path)

    def _svm_entry(self, value: object, path: KeyPath) -> SvmSpec | None:
        """One entry of an ``svms`` list."""
        if value == "all":
            self._add(path, "'all' cannot be one entry of a list: write 'svms: all'")
            return None
        if isinstance(value, str):
            pattern = self._pattern(value, path)
            return None if pattern is None else _svm_spec(path, pattern, None, None)
        known = self._mapping(
            value,
            path,
            SVM_KEYS,
            "an SVM name, a glob or a mapping with name: (and key_servers:)",
            _SETTINGS_HINTS,
        )
        if known is None:
            return None
        pattern = None
        if "name" not in known:
            self._add((*path, "name"), "name is required (an SVM name or glob)")
        elif known["name"] == "all":
            self._add((*path, "name"), "'all' is not an SVM name: write 'svms: all'")
        else:
            pattern = self._pattern(known["name"], (*path, "name"))
        key_servers = self._optional(known, path, "key_servers", self._server_list)
        retire_servers = self._optional(known, path, "retire_servers", self._retire_list)
        if pattern is None:
            return None
        return _svm_spec(path, pattern, key_servers, retire_servers)

    def _excludes(self, value: object, path: KeyPath) -> Field[tuple[str, ...]]:
        """``exclude_svms``: SVM names and globs."""
        items = self._list(value, path, "SVM names or globs")
        if items is None:
            return INVALID
        patterns = [self._exclude(item, (*path, index)) for index, item in enumerate(items)]
        valid = [p for p in patterns if p is not None]
        return At(tuple(valid), path) if len(valid) == len(patterns) else INVALID

    def _exclude(self, value: object, path: KeyPath) -> str | None:
        """One entry of ``exclude_svms``; ``all`` is refused there as in ``svms`` lists."""
        if value == "all":
            # Read as the name of an SVM it would exclude one called "all"; whoever wrote it
            # more likely meant every SVM. The schema refuses it too.
            self._add(
                path,
                "'all' is not an SVM name here: to select no SVM, drop svms: "
                "(an SVM named all: write the glob '[a]ll')",
            )
            return None
        return self._pattern(value, path)

    # -- rollout: windows, waves ----------------------------------------------------------

    def _window(self, value: object, path: KeyPath) -> Field[Window | None]:
        """A maintenance window: one value, never merged (null: none, whatever is inherited)."""
        if value is None:
            return At(None, path)
        key = _window_key(value)
        window = None if key is None else self._windows.get(key)
        if window is None:
            window = self._new_window(value, path)
            if window is None:
                return INVALID
            if key is not None:
                self._windows[key] = window
        return At(window, path)

    def _new_window(self, value: object, path: KeyPath) -> Window | None:
        """Check a window's four keys and build it; None when anything is wrong (reported)."""
        known = self._mapping(
            value,
            path,
            WINDOW_KEYS,
            f"a window such as {_WINDOW_EXAMPLE}, or null for none",
            {},
        )
        if known is None or not isinstance(value, dict):  # a dict whenever known is not None
            return None
        for key in WINDOW_KEYS:
            if _missing(key, value, WINDOW_KEYS):
                self._add((*path, key), f"{key} is required: a window is {_WINDOW_EXAMPLE}")
        days = self._days(known["days"], (*path, "days")) if "days" in known else None
        start = self._time(known["start"], (*path, "start")) if "start" in known else None
        end = self._time(known["end"], (*path, "end")) if "end" in known else None
        tz = self._zone(known["tz"], (*path, "tz")) if "tz" in known else None
        if start is not None and start == end:
            self._add(
                (*path, "end"),
                f"end equals start ({start:%H:%M}): empty, or a whole day? For whole days write "
                'start: "00:00" and end: "23:59" (an end before start runs overnight)',
            )
            return None
        if days is None or start is None or end is None or tz is None:
            return None
        return Window(days=days, start=start, end=end, tz=tz)

    def _days(self, value: object, path: KeyPath) -> frozenset[int] | None:
        """``days``: a non-empty list of day names, each once (mon … sun, any case)."""
        if isinstance(value, str):
            self._add(
                path,
                f"expected a list of days such as [sat, sun] (every day: [{', '.join(DAYS)}]), "
                f"got the string {_show(value)}",
            )
            return None
        items = self._list(value, path, "days (mon, tue, wed, thu, fri, sat, sun)")
        if items is None:
            return None
        if not items:
            self._add(path, "the list of days is empty: name at least one (mon … sun)")
            return None
        days: dict[int, KeyPath] = {}
        valid = True
        for index, item in enumerate(items):
            day = self._day(item, (*path, index))
            if day is None:
                valid = False
            elif day in days:
                self._add(
                    (*path, index),
                    f"{DAYS[day]!r} is listed twice (also at {render_path(days[day])})",
                )
                valid = False
            else:
                days[day] = (*path, index)
        return frozenset(days) if valid else None

    def _day(self, value: object, path: KeyPath) -> int | None:
        """One day name, as its number (0 = Monday)."""
        if not isinstance(value, str):
            self._add(path, f"expected a day (mon … sun), got {describe_type(value)}")
            return None
        name = value.lower()
        if name in _DAY_NUMBERS:
            return _DAY_NUMBERS[name]
        # "saturday" is too far from "sat" for difflib; a prefix says what was meant.
        close = [d for d in DAYS if name.startswith(d)] or difflib.get_close_matches(
            name, DAYS, n=1
        )
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self._add(path, f"{_show(value)} is not a day: write mon, tue, … or sun{hint}")
        return None

    def _time(self, value: object, path: KeyPath) -> time | None:
        """``start``/``end``: a quoted ``"HH:MM"``; a TOML local time of whole minutes too."""
        key = path[-1]
        if isinstance(value, str):
            match = TIME_RE.fullmatch(value)
            if match:
                return time(int(match[1]), int(match[2]))
            self._add(
                path,
                f'{_show(value)} is not a time of day: write "HH:MM", 24-hour, from "00:00" '
                'to "23:59" (midnight is "00:00")',
            )
            return None
        if isinstance(value, time):  # TOML ``start = 01:00:00``: exact, so taken as it is
            if not (value.second or value.microsecond or value.tzinfo):
                return value
            self._add(path, f'expected whole minutes, "HH:MM" (the zone is tz), got {value}')
            return None
        if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
            # YAML 1.1 reads an unquoted 10:30 as 10 * 60 + 30 (sexagesimal). Turning the
            # number back into a time would be a guess (``start: 630`` reads the same), so
            # it is refused with the time it most likely was.
            hours, minutes = divmod(value, 60)
            self._add(
                path,
                f"got the number {value}: YAML reads an unquoted {hours}:{minutes:02d} as a "
                f'number; quote the time: {key}: "{hours:02d}:{minutes:02d}"',
            )
            return None
        self._add(
            path,
            f'expected a time of day in quotes ({key}: "01:00"), got {describe_type(value)} '
            "(an unquoted time may be read as a number: quote it)",
        )
        return None

    def _zone(self, value: object, path: KeyPath) -> str | None:
        """``tz``: an IANA time zone name that ``zoneinfo`` knows."""
        if isinstance(value, str) and value in self._zones:
            return value
        name = self._string(value, path, "an IANA time zone such as Europe/Paris")
        if name is None:
            return None
        problem = _zone_problem(name)
        if problem is not None:
            self._add(path, problem)
            return None
        self._zones.add(name)
        return name

    def _wave(self, value: object, path: KeyPath) -> Field[int]:
        """``wave``: the wave a cluster is pinned to, 1 being the first."""
        if isinstance(value, bool) or not isinstance(value, int):
            got = describe_type(value)
        elif not 1 <= value <= MAX_WAVE:
            got = repr(value)
        else:
            return At(value, path)
        self._add(path, f"expected a wave number from 1 (the first wave) to {MAX_WAVE}, got {got}")
        return INVALID

    def _region(self, value: object, path: KeyPath) -> Field[str | None]:
        """``region``: the workers' task queue a cluster is reached from (null: none)."""
        if value is None:
            return At(None, path)
        if isinstance(value, str) and REGION_RE.fullmatch(value):
            return At(value, path)
        got = _show(value) if isinstance(value, str) else describe_type(value)
        self._add(
            path,
            "expected a region: lower-case letters, digits, '_' and '-', starting with a "
            f"letter or digit, at most 63 characters (such as eu-west), got {got}",
        )
        return INVALID

    def _rollout(self, value: object) -> Rollout:
        """The top-level ``rollout`` mapping; keys written wrongly are reported and left unset."""
        path: KeyPath = ("rollout",)
        known = self._mapping(
            value, path, ROLLOUT_KEYS, "a mapping of rollout settings", _ROLLOUT_HINTS
        )
        if not known:
            return Rollout()

        def read(key: str, check: Callable[[object, KeyPath], T | None]) -> T | None:
            """The key's checked value, None when absent or wrong."""
            return check(known[key], (*path, key)) if key in known else None

        return Rollout(
            waves=read("waves", self._waves),
            wave_order=read("wave_order", self._order),
            max_fail_percent=read("max_fail_percent", self._percent),
            max_failures=read("max_failures", self._failures),
            pause_between_waves=read("pause_between_waves", self._pause),
        )

    def _waves(self, value: object, path: KeyPath) -> tuple[WaveSize, ...] | None:
        """``waves``: ``"1,10%,100%"``, or a list of the same sizes (checked item by item)."""
        if isinstance(value, str):
            try:
                return parse_waves(value)
            except ValueError as exc:
                self._add(path, str(exc))
                return None
        items = self._list(value, path, 'wave sizes (1, "10%") or a string such as "1,10%,100%"')
        if items is None:
            return None
        if not items:
            self._add(path, 'the list of waves is empty: write sizes such as [1, "10%", "100%"]')
            return None
        sizes: list[WaveSize] = []
        for index, item in enumerate(items):
            try:  # one at a time, so that a bad size is reported at its own line
                sizes.extend(parse_waves([item]))
            except ValueError as exc:
                self._add((*path, index), str(exc))
        return tuple(sizes) if len(sizes) == len(items) else None

    def _order(self, value: object, path: KeyPath) -> str | None:
        """``wave_order``: ``inventory``, ``name`` or ``random:SEED``."""
        if not isinstance(value, str):
            self._add(path, f"expected inventory, name or random:SEED, got {describe_type(value)}")
            return None
        try:
            return check_order(value)
        except ValueError as exc:
            self._add(path, str(exc))
            return None

    def _percent(self, value: object, path: KeyPath) -> float | None:
        """``max_fail_percent``: a number from 0 to 100."""
        if isinstance(value, str) and value.strip().endswith("%"):
            self._add(path, f"write the number without '%': max_fail_percent: {value.strip()[:-1]}")
            return None
        return self._amount(value, path, 100)

    def _pause(self, value: object, path: KeyPath) -> float | None:
        """``pause_between_waves``: seconds, 0 or more."""
        return self._amount(value, path, MAX_LIMIT)

    def _amount(self, value: object, path: KeyPath, most: int) -> float | None:
        """A number from 0 to ``most``; booleans, NaN and infinities are not."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._add(path, f"expected a number from 0 to {most}, got {describe_type(value)}")
            return None
        if not 0 <= value <= most:  # false for NaN too; compared before any float()
            self._add(path, f"expected a number from 0 to {most}, got {value!r}")
            return None
        return float(value)

    def _failures(self, value: object, path: KeyPath) -> int | None:
        """``max_failures``: a whole number, 0 or more."""
        if isinstance(value, bool) or not isinstance(value, int):
            self._add(path, f"expected a whole number, 0 or more, got {describe_type(value)}")
            return None
        if value < 0:
            self._add(path, f"expected a whole number, 0 or more, got {value}")
            return None
        return value


_SETTINGS_READERS: Final[dict[str, Callable[[_Parser, object, KeyPath], object]]] = {
    "username": _Parser._username,
    "password": _Parser._password,
    "tls": _Parser._tls,
    "limits": _Parser._limits,
    "key_servers": _Parser._server_list,
    "retire_servers": _Parser._retire_list,
    "svms": _Parser._selection,
    "exclude_svms": _Parser._excludes,
    "cluster_scope": _Parser._flag,
    "window": _Parser._window,
    "wave": _Parser._wave,
    "region": _Parser._region,
}
"""How each inheritable setting is read, in the order of ``Settings``' fields (and reads)."""


def _svm_spec(
    path: KeyPath,
    pattern: str,
    key_servers: Field[ServerList],
    retire_servers: Field[RetireList],
) -> SvmSpec:
    """A name or glob entry, its kind told by the glob characters."""
    kind = SelectorKind.NAME if GLOB_CHARS.isdisjoint(pattern) else SelectorKind.GLOB
    return SvmSpec(
        path=path,
        kind=kind,
        pattern=pattern,
        key_servers=key_servers,
        retire_servers=retire_servers,
    )
