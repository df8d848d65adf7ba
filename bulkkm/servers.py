"""Key-server names, normalised the one way they are compared and sent.

``kms.Example.com`` -> ``kms.example.com:5696``; ``fd20::1`` -> ``[fd20::1]:5696``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

__all__ = ["KMIP_PORT", "join_host_port", "normalize_server", "split_host_port"]

KMIP_PORT: Final = 5696
_HOSTNAME: Final = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$"
)


def split_host_port(text: str, default_port: int) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; raise ValueError if malformed.

    The host comes back lower-cased and without a trailing dot, IPv6 without brackets, IPv4
    and IPv6 in canonical form.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty address")
    if "://" in text:
        raise ValueError(f"{text!r} has a scheme; write the host only (bulkkm always uses https)")
    port_text: str | None = None
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ValueError(f"{text!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected ':port' after ']'")
            port_text = rest[1:]
        try:
            host = str(ipaddress.IPv6Address(host))
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    elif text.count(":") > 1:
        try:
            host = str(ipaddress.IPv6Address(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a valid address") from None
    else:
        host, _, port_text_raw = text.partition(":")
        port_text = port_text_raw if ":" in text else None
        host = host.lower()
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
                raise ValueError(f"{text!r}: {host!r} is not a valid host name") from None
            # The trailing dot of a fully qualified name names the same host: without it
            # one server could be both kept and retired, or listed twice.
            host = host.removesuffix(".")
    port = default_port
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return host, port


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize_server(text: str) -> str:
    """The canonical ``host:port`` form of a key-server name (port 5696 implied)."""
    host, port = split_host_port(text, KMIP_PORT)
    return join_host_port(host, port)
