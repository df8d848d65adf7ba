"""``bulkkm worker``: a region's worker, polling its task queue until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import structlog
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from bulkkm.temporal._activity import ClusterActivity
from bulkkm.temporal._wire import WORKFLOW_QUEUE, task_queue
from bulkkm.temporal._workflow import Rollout

__all__ = ["serve_worker"]

log = structlog.get_logger("bulkkm")


async def serve_worker(
    address: str, namespace: str, region: str, inventory: Path, *, chunks_at_once: int = 20
) -> int:
    """Run the region's activities (and rollout workflows) until SIGINT or SIGTERM; exit 0."""
    activities = ClusterActivity(inventory, region)
    # Loaded once now (a broken inventory is refused before polling), then again only when
    # the file changes.
    activities.inventories.get()
    client = await Client.connect(address, namespace=namespace)
    region_worker = Worker(
        client,
        task_queue=task_queue(region),
        activities=[activities.run_clusters],
        # Up to CHUNK clusters each: about as many clusters at once as the in-process engine.
        max_concurrent_activities=chunks_at_once,
    )
    # The workflow holds no secret and sends no request: any region's worker may run it.
    # bulkkm passes through the sandbox: the workflow uses only ``_wire``'s plain values,
    # and the package's other modules (the engine, structlog) must not be re-imported there.
    runner = SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("bulkkm")
    )
    workflow_worker = Worker(
        client, task_queue=WORKFLOW_QUEUE, workflows=[Rollout], workflow_runner=runner
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker_started", region=region, task_queue=task_queue(region), namespace=namespace)
    async with region_worker, workflow_worker:
        await stop.wait()
        log.info("worker_stopping", region=region)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    return 0
