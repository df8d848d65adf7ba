"""One cluster listed twice, across activities and regions: claimed in the workflow first.

In-process, the engine claims each discovered cluster uuid for the inventory cluster that
found it first, and refuses the others (``duplicate_cluster``: nothing sent under their
name). An activity sees only its own clusters, so before the engine starts, the activity
reads each cluster's uuid (one GET, the engine's own ``identity``) and claims them all in
the rollout workflow (an update: one at a time, in the order they arrive, remembered for
the run). The uuids the workflow says another inventory cluster claimed first are given to
the engine as claimed already: it discovers the cluster and refuses it exactly as
in-process.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Final

from bulkkm.engine._gate import Gate
from bulkkm.engine._retrying import retrying
from bulkkm.errors import OntapError
from bulkkm.events import ErrorInfo
from bulkkm.inventory import Cluster
from bulkkm.ontap import OntapClient, TlsContexts
from bulkkm.retry import RetryOn, RetryPolicy

__all__ = ["Identified", "identify"]

AT_ONCE: Final = 64
"""Clusters identified at once by one activity (a chunk has at most 25)."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Identified:
    """The clusters' uuids by inventory name, and why the others could not be read."""

    uuids: dict[str, str]
    failed: dict[str, ErrorInfo]


async def identify(
    clusters: Iterable[Cluster], tls: TlsContexts, policy: RetryPolicy
) -> Identified:
    """Each cluster's uuid (read-only), tried as the engine tries its discovery.

    A cluster that will not say, once the retry policy gives up, is one whose discovery
    failed: the activity reports it so (``discovery_failed``) and leaves it out of the
    engine's run, so that no cluster is worked without its claim. One that names no uuid
    is worked unclaimed, as in-process.
    """
    slots = asyncio.Semaphore(AT_ONCE)
    uuids: dict[str, str] = {}
    failed: dict[str, ErrorInfo] = {}

    async def one(cluster: Cluster) -> None:
        retries = RetryOn()
        async with (
            slots,
            OntapClient.connect(
                cluster, gate=Gate(cluster.limits), read_only=True, tls=tls
            ) as client,
        ):

            async def attempt(_number: int) -> str | None:
                return (await client.identity())[1]

            try:
                uuid = await retrying(attempt, policy=policy, on=retries, report=lambda *_: None)
            except OntapError as exc:
                failed[cluster.name] = _error(exc, retries)
                return
        if uuid is not None:
            uuids[cluster.name] = uuid

    await asyncio.gather(*(one(c) for c in clusters))
    return Identified(uuids=uuids, failed=failed)


def _error(exc: OntapError, retries: RetryOn) -> ErrorInfo:
    """The error the report shows, as the retry policy sees it (as the engine does)."""
    info = ErrorInfo.from_exception(exc)
    category = retries.category(exc)
    return info if category is info.category else dataclasses.replace(info, category=category)
