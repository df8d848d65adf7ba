"""What the fleet saw: every request and every key-server write, in arrival order."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

__all__ = ["RequestRecord", "WriteRecord"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    """One key-server write ONTAP processed, per server (a ``records`` POST gives several).

    ``applied`` says whether the configuration changed. ``status`` is the HTTP status
    answered (202 in job mode; ``None`` when the answer was dropped after applying) and
    ``code`` ONTAP's error code when refused; ``server`` is empty when the body named none
    that could be read. A request dropped or failed by a fault before ONTAP looked at it
    (reset, 500, hang, max_in_flight) is not a write. In job mode the write is recorded
    when the job finishes.
    """

    cluster: str
    method: str
    key_manager_uuid: str
    server: str
    applied: bool
    at: float
    status: int | None = None
    code: str | None = None


class RequestRecord(NamedTuple):
    """One request that reached a cluster: its path with uuids and servers templated."""

    cluster: str
    method: str
    path: str
    at: float
