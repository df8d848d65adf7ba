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
from collections.abc import Iterable, Mapping
from typing import Final

import structlog

from bulkkm.engine._gate import Gate
from bulkkm.errors import ErrorCategory, OntapError
from bulkkm.inventory import Cluster
from bulkkm.ontap import OntapClient, TlsContexts

__all__ = ["identify"]

log = structlog.get_logger("bulkkm")

ATTEMPTS: Final = 3
AT_ONCE: Final = 16
_AGAIN: Final = frozenset({ErrorCategory.TRANSIENT, ErrorCategory.TRANSPORT, ErrorCategory.TIMEOUT})


async def identify(clusters: Iterable[Cluster], tls: TlsContexts) -> Mapping[str, str]:
    """Each cluster's uuid by inventory name (read-only; a cluster that will not say: left out).

    A cluster left out is not claimed: the engine's discovery then meets the same failure
    and reports it, as it would have anyway.
    """
    slots = asyncio.Semaphore(AT_ONCE)

    async def one(cluster: Cluster) -> tuple[str, str | None]:
        async with slots:
            return cluster.name, await _uuid(cluster, tls)

    found = await asyncio.gather(*(one(c) for c in clusters))
    return {name: uuid for name, uuid in found if uuid is not None}


async def _uuid(cluster: Cluster, tls: TlsContexts) -> str | None:
    """The cluster's uuid, a few tries over transient failures; None if it will not say."""
    async with OntapClient.connect(
        cluster, gate=Gate(cluster.limits), read_only=True, tls=tls
    ) as client:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                _, uuid = await client.identity()
            except OntapError as exc:
                if exc.category not in _AGAIN or attempt == ATTEMPTS:
                    log.info("cluster_not_identified", cluster=cluster.name, error=exc.message)
                    return None
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            else:
                return uuid
    return None
