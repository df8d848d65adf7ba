"""What the fleet saw: every request, every key-server write, every verification read, in order.

``WriteRecord.at`` and ``VerifyRecord.at`` are ``time.monotonic()`` on one clock, so the
two logs merge into one ordered journal (``SimulatedFleet.journal``): a test can check
that no DELETE on a key manager came before a connectivity read that found its servers
available.
"""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import NamedTuple

__all__ = ["RequestRecord", "VerifyKind", "VerifyRecord", "WriteRecord"]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WriteRecord:
    """One key-server write ONTAP processed, per server (a ``records`` POST gives several).

    ``method`` is POST (add), PATCH or DELETE (remove). ``applied`` says whether the
    configuration changed. ``status`` is the HTTP status answered (202 in job mode;
    ``None`` when the answer was dropped after applying) and ``code`` ONTAP's error code
    when refused; ``server`` is empty when the body named none that could be read. A
    request dropped or failed by a fault before ONTAP looked at it (reset, 500, hang,
    max_in_flight) is not a write. In job mode the write is recorded when the job
    finishes. ``force``: a DELETE sent with ``force=true``.
    """

    cluster: str
    method: str
    key_manager_uuid: str
    server: str
    applied: bool
    at: float
    status: int | None = None
    code: str | None = None
    force: bool = False


class VerifyKind(StrEnum):
    """What a verification record saw."""

    CONNECTIVITY = "connectivity"
    """A key-server GET that returned ``connectivity`` for ``server``."""
    KEYS = "keys"
    """A GET of the keys on one node (``node_uuid``)."""
    RESTORE = "restore"
    """A restore job from ``server`` that finished (``passed``: it succeeded)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class VerifyRecord:
    """One answer a migration verifies with, as ONTAP gave it.

    ``passed``: connectivity: ``server`` available on every node; keys: every key of the
    key manager restored on that node; restore: the job succeeded. ``states`` are the
    node states of a connectivity read, in node order.
    """

    cluster: str
    kind: VerifyKind
    key_manager_uuid: str
    server: str
    at: float
    passed: bool
    node_uuid: str = ""
    states: tuple[str, ...] = ()


class RequestRecord(NamedTuple):
    """One request that reached a cluster: its path with uuids and servers templated."""

    cluster: str
    method: str
    path: str
    at: float
