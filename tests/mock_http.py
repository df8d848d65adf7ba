"""aioresponses, made to work with aiohttp 3.14.

aioresponses 0.7.9 builds ``ClientResponse`` without the ``stream_writer`` argument that
aiohttp 3.14 (a security release) made required (pnuckowski/aioresponses#289). Until a
release fixes it, every mocked response here uses a subclass that supplies a stand-in.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aioresponses import CallbackResult, aioresponses

__all__ = ["OntapMock", "reply"]


class _SentWriter:
    """Stands in for the writer of a request that is already sent."""

    output_size = 0


class _Response(aiohttp.ClientResponse):
    """A ClientResponse that aioresponses can build."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        """Add the writer aioresponses does not pass."""
        kwargs.setdefault("stream_writer", _SentWriter())
        super().__init__(method, url, **kwargs)


class OntapMock(aioresponses):
    """aioresponses whose responses build under aiohttp 3.14."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Register a mocked answer with the compatible response class."""
        kwargs.setdefault("response_class", _Response)
        super().add(*args, **kwargs)


def reply(
    status: int = 200, payload: dict[str, Any] | None = None, **kwargs: Any
) -> CallbackResult:
    """A callback's answer, with the compatible response class."""
    return CallbackResult(status=status, payload=payload, response_class=_Response, **kwargs)
