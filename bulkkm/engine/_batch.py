"""One batch on its way: the POSTs that add a key manager's missing servers.

What a batch goes through, whatever the cluster answers:

- its *remaining* targets are those not yet reported; each is reported once, by ``settle``;
- the missing servers go out *together* (one POST, ``records[]`` from ONTAP 9.8) until
  ONTAP refuses them with 65536870 (already configured) while listing none of them: then
  one server per POST;
- a 65536870 answer is settled by what the key manager lists (``present``); for a lone
  server, the answer itself says so;
- a POST that failed after it left, without proving a refusal, leaves a write of *unknown*
  fate: nothing more is sent to the key manager before its servers are read back, and a
  server found there is ``added`` (never POSTed again);
- ``finish`` ends the batch: a write still of unknown fate makes its targets ``failed``
  ("may have applied"), never skipped; the rest end as the caller says.

No retries, stops or deadlines here (the cluster run schedules the attempts): a batch can
be driven by a fake client, without a network.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Protocol

from bulkkm.errors import ApiError, OntapError
from bulkkm.events import ErrorInfo, Outcome
from bulkkm.inventory import DesiredServer
from bulkkm.plan import Batch, Decision
from bulkkm.retry import ALREADY_CONFIGURED

__all__ = ["BatchSend", "KeyServers", "Report"]


class KeyServers(Protocol):
    """What a batch needs of its cluster's client."""

    async def add_key_servers(
        self, key_manager_uuid: str, servers: tuple[DesiredServer, ...]
    ) -> None:
        """POST the servers to a key manager."""

    async def key_server_names(self, key_manager_uuid: str) -> frozenset[str]:
        """The primary servers a key manager has now."""


class Report(Protocol):
    """Reports one target's outcome (once: a target already reported is left alone)."""

    def __call__(
        self,
        d: Decision,
        outcome: Outcome,
        *,
        error: ErrorInfo | None,
        reason: str | None,
        started: datetime | None,
        attempts: int,
    ) -> None:
        """Report ``d`` as ``outcome``."""


class BatchSend:
    """Where one batch stands across its attempts, and the steps that move it on."""

    __slots__ = (
        "_client",
        "_report",
        "batch",
        "posts",
        "remaining",
        "started",
        "together",
        "unknown",
    )

    def __init__(self, batch: Batch, client: KeyServers, report: Report) -> None:
        """Nothing sent yet; every target of the batch remains."""
        self.batch = batch
        self._client = client
        self._report = report
        self.remaining: list[Decision] = list(batch.decisions)
        """Targets of the batch not yet reported."""
        self.started = datetime.now(UTC)
        self.posts = 0
        self.unknown: OntapError | None = None
        """The failure of the last POST when its fate is unknown: read back before anything."""
        self.together = True
        """Whether the remaining servers still go out in one POST."""

    @property
    def servers(self) -> tuple[str, ...]:
        """The servers still to settle."""
        return tuple(d.server for d in self.remaining)

    async def attempt(self) -> None:
        """One attempt: read back if the last POST's fate is unknown, then POST what remains.

        Raises the failure of a POST (``unknown`` is set first when it may have applied).
        """
        uuid = self.batch.key_manager_uuid
        if self.unknown is not None:
            await self.read_back()
        while self.remaining:
            chunk = self.remaining if self.together else self.remaining[:1]
            self.posts += 1
            try:
                await self._client.add_key_servers(uuid, tuple(d.desired for d in chunk))
            except OntapError as exc:
                if exc.sent:  # it may have applied: nothing more is sent before a read-back
                    self.unknown = exc
                    raise
                if not isinstance(exc, ApiError) or exc.code != ALREADY_CONFIGURED:
                    raise
                await self._already_configured(chunk)
                continue
            self.settle(Outcome.ADDED, only=frozenset(d.server for d in chunk))

    async def read_back(self) -> None:
        """Settle a write of unknown fate: the servers the key manager has now are ``added``."""
        self.settle(
            Outcome.ADDED, only=await self._client.key_server_names(self.batch.key_manager_uuid)
        )
        self.unknown = None

    async def _already_configured(self, chunk: list[Decision]) -> None:
        """ONTAP says a server of the chunk is there already (65536870): settle what is."""
        if len(chunk) == 1:
            self.settle(Outcome.PRESENT, only=frozenset({chunk[0].server}))
            return
        before = len(self.remaining)
        names = await self._client.key_server_names(self.batch.key_manager_uuid)
        self.settle(Outcome.PRESENT, only=names)
        if len(self.remaining) == before:
            self.together = False  # refused, yet none of it is listed: one server per POST

    def finish(
        self,
        outcome: Outcome,
        *,
        error: ErrorInfo | None = None,
        reason: str | None = None,
        why: str | None = None,
    ) -> None:
        """End the batch: targets a write of unknown fate may have applied are ``failed``.

        ``why``: why that write could not be read back, when it was tried. The rest of the
        remaining targets end as ``outcome``.
        """
        if (unknown := self.unknown) is not None:
            message = f"{unknown.message}; the write may have applied and was not read back"
            info = ErrorInfo.from_exception(unknown)
            info = dataclasses.replace(info, message=f"{message} ({why})" if why else message)
            self.settle(Outcome.FAILED, error=info, reason=reason)
        else:
            self.settle(outcome, error=error, reason=reason)

    def settle(
        self,
        outcome: Outcome,
        *,
        only: frozenset[str] | None = None,
        error: ErrorInfo | None = None,
        reason: str | None = None,
    ) -> None:
        """Report the remaining targets (those whose server is in ``only``) as ``outcome``."""
        done = [d for d in self.remaining if only is None or d.server in only]
        for d in done:
            self._report(
                d, outcome, error=error, reason=reason, started=self.started, attempts=self.posts
            )
        self.remaining = [d for d in self.remaining if only is not None and d.server not in only]
