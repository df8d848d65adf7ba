"""How a service is set up: where it keeps its data, where it listens, how long plans live."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bulkkm.errors import UsageError

__all__ = ["ServiceConfig", "is_loopback", "parse_duration", "parse_listen"]

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _utcnow() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Everything ``bulkkm serve`` is told; checked when made."""

    data: Path
    """The database, and per run its reports, plan and events (``runs/ID/``)."""
    host: str = "127.0.0.1"
    port: int = 8080
    inventories: Path | None = None
    """The inventories runs may name (default: ``DATA/inventories``)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    plan_ttl: float = 24 * 3600.0
    """Seconds a plan may wait for its approval."""
    clock: Callable[[], datetime] = _utcnow
    """Now, for plan expiry (tests move it)."""
    expiry_interval: float = 60.0
    """Seconds between sweeps that expire plans nobody approved in time."""

    def __post_init__(self) -> None:
        """Refuse half a TLS setup, and plain HTTP beyond loopback (tokens would cross it)."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together")
        if self.tls_cert is None and not is_loopback(self.host):
            raise UsageError(
                f"--listen {self.host}: not a loopback address; serving tokens over plain "
                "HTTP beyond this machine is refused (give --tls-cert and --tls-key)"
            )
        if self.plan_ttl <= 0:
            raise UsageError("--plan-ttl must be more than 0")

    @property
    def inventories_dir(self) -> Path:
        """Where inventories are listed from."""
        return self.inventories if self.inventories is not None else self.data / "inventories"

    @property
    def database(self) -> Path:
        """The SQLite file."""
        return self.data / "bulkkm.db"

    @property
    def runs_dir(self) -> Path:
        """One folder per run."""
        return self.data / "runs"

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.tls_cert is not None else "http"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``; UsageError naming what is wrong."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
    if match is None:
        raise UsageError(f"--listen {text!r}: expected HOST:PORT or [IPV6]:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise UsageError(f"--listen {text!r}: port {port} is out of range")
    return host, port


def parse_duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``30m``, ``24h`` or ``7d``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"{text!r} is not a duration (like 3600, 30m, 24h, 7d)")
    return float(match.group(1)) * _UNITS[match.group(2)]
