"""Settings as written, one layer each (defaults, a group, a cluster), and how they stack.

Every field is ``None`` when the layer does not set it, ``INVALID`` when it sets it wrongly
(already reported; checks that depend on it are skipped, so one mistake is reported once),
or ``At(value, path)``: the value and where it was written, so that a problem found after
merging points at the line that caused it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final, Generic, TypeAlias, TypeVar, final

from bulkkm.inventory._format import KeyPath
from bulkkm.inventory._model import Rollout, SelectorKind
from bulkkm.inventory._secrets import SecretRef
from bulkkm.rollout import Window

__all__ = [
    "EMPTY_LIMITS",
    "EMPTY_SETTINGS",
    "EMPTY_TLS",
    "INVALID",
    "INVALID_SETTINGS",
    "At",
    "ClusterSpec",
    "Document",
    "Field",
    "Invalid",
    "LimitsLayer",
    "RetireList",
    "Selection",
    "ServerList",
    "ServerSpec",
    "Settings",
    "SvmSpec",
    "TlsLayer",
]

T = TypeVar("T")


@final
class Invalid:
    """The marker of a setting that is present but wrong (and already reported)."""

    __slots__ = ()

    def __repr__(self) -> str:
        """``INVALID``."""
        return "INVALID"


INVALID: Final = Invalid()


@dataclasses.dataclass(frozen=True, slots=True)
class At(Generic[T]):
    """A value and the key path where it was written."""

    value: T
    path: KeyPath


Field: TypeAlias = At[T] | Invalid | None


def _pick(top: Field[T], base: Field[T]) -> Field[T]:
    """The upper layer's setting when it has one, else the lower layer's."""
    return base if top is None else top


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    """One entry of ``key_servers``, its names normalised."""

    path: KeyPath
    server: str
    secondaries: tuple[str, ...] = ()
    password: Field[SecretRef] = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServerList:
    """A whole ``key_servers`` list (lists replace, never merge)."""

    entries: tuple[ServerSpec, ...]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetireList:
    """A whole ``retire_servers`` list: normalised names, each with where it was written.

    Replaced whole like ``key_servers``; an empty list is valid (nothing to retire, whatever
    is inherited).
    """

    entries: tuple[At[str], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The normalised server names, in the order written."""
        return tuple(entry.value for entry in self.entries)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SvmSpec:
    """One entry of ``svms``: a name, a glob or ``all``, with its own key servers if any."""

    path: KeyPath
    kind: SelectorKind
    pattern: str
    key_servers: Field[ServerList] = None
    retire_servers: Field[RetireList] = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """A ``svms`` setting; ``complete`` is false when some entries were invalid."""

    entries: tuple[SvmSpec, ...]
    complete: bool = True


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TlsLayer:
    """The ``tls`` keys one layer sets."""

    verify: Field[bool] = None
    ca_file: Field[str] = None
    client_cert: Field[str] = None
    client_key: Field[str] = None

    def over(self, base: TlsLayer) -> TlsLayer:
        """This layer on top of ``base``, key by key."""
        if self is EMPTY_TLS or self == EMPTY_TLS:  # `is`: most layers set no TLS at all
            return base
        return TlsLayer(
            verify=_pick(self.verify, base.verify),
            ca_file=_pick(self.ca_file, base.ca_file),
            client_cert=_pick(self.client_cert, base.client_cert),
            client_key=_pick(self.client_key, base.client_key),
        )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LimitsLayer:
    """The ``limits`` keys one layer sets (``rate`` may be set to null: no rate limit)."""

    concurrency: Field[int] = None
    rate: Field[float | None] = None
    timeout: Field[float] = None

    def over(self, base: LimitsLayer) -> LimitsLayer:
        """This layer on top of ``base``, key by key."""
        if self is EMPTY_LIMITS or self == EMPTY_LIMITS:  # `is`: most layers set no limits
            return base
        return LimitsLayer(
            concurrency=_pick(self.concurrency, base.concurrency),
            rate=_pick(self.rate, base.rate),
            timeout=_pick(self.timeout, base.timeout),
        )


EMPTY_TLS: Final = TlsLayer()
EMPTY_LIMITS: Final = LimitsLayer()


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The inheritable settings one layer sets."""

    username: Field[str] = None
    password: Field[SecretRef] = None
    tls: TlsLayer = EMPTY_TLS
    limits: LimitsLayer = EMPTY_LIMITS
    key_servers: Field[ServerList] = None
    retire_servers: Field[RetireList] = None
    svms: Field[Selection] = None
    exclude_svms: Field[tuple[str, ...]] = None
    cluster_scope: Field[bool] = None
    window: Field[Window | None] = None
    """One value, replaced whole (null: no window, whatever is inherited)."""
    wave: Field[int] = None
    """Never set in defaults; the parser refuses it there."""
    region: Field[str | None] = None
    """One value (null: no region, whatever is inherited)."""

    def over(self, base: Settings) -> Settings:
        """This layer on top of ``base``: mappings merged key by key, lists and windows replaced."""
        if self is EMPTY_SETTINGS:
            return base
        # _pick written out: this runs once per cluster, and a call per field is most of it.
        return Settings(
            username=base.username if self.username is None else self.username,
            password=base.password if self.password is None else self.password,
            tls=self.tls.over(base.tls),
            limits=self.limits.over(base.limits),
            key_servers=base.key_servers if self.key_servers is None else self.key_servers,
            retire_servers=(
                base.retire_servers if self.retire_servers is None else self.retire_servers
            ),
            svms=base.svms if self.svms is None else self.svms,
            exclude_svms=base.exclude_svms if self.exclude_svms is None else self.exclude_svms,
            cluster_scope=base.cluster_scope if self.cluster_scope is None else self.cluster_scope,
            window=base.window if self.window is None else self.window,
            wave=base.wave if self.wave is None else self.wave,
            region=base.region if self.region is None else self.region,
        )


EMPTY_SETTINGS: Final = Settings()
INVALID_SETTINGS: Final = Settings(
    username=INVALID,
    password=INVALID,
    tls=TlsLayer(verify=INVALID, ca_file=INVALID, client_cert=INVALID, client_key=INVALID),
    limits=LimitsLayer(concurrency=INVALID, rate=INVALID, timeout=INVALID),
    key_servers=INVALID,
    retire_servers=INVALID,
    svms=INVALID,
    exclude_svms=INVALID,
    cluster_scope=INVALID,
    window=INVALID,
    wave=INVALID,
    region=INVALID,
)
"""A layer that is not even a mapping: everything it might have set counts as invalid."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """A cluster entry as written; ``name``/``address`` are None when missing or invalid."""

    path: KeyPath
    name: str | None
    address: tuple[str, int] | None
    groups: tuple[str, ...]
    """The groups it names that exist, in order."""
    settings: Settings


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """A whole file as written, every layer checked on its own."""

    defaults: Settings
    groups: Mapping[str, Settings]
    clusters: tuple[ClusterSpec, ...]
    rollout: Rollout = Rollout()
    """Not layered: read as it is (the parts written wrongly are left unset, and reported)."""
    literal_secrets: tuple[KeyPath, ...] = ()
    """Where passwords are written out (allowed by ``allow_plaintext_secrets``)."""
