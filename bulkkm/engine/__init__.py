"""The engine: discover, plan and apply across the fleet.

The only place with task groups, semaphores, rate limiters and deadlines. ``run`` takes a
resolved inventory and ``Options`` and hands every event (progress, outcomes, the summary)
to its subscribers: it never prints, so any front end (the CLI, a service) can drive it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bulkkm.collector import fewer_collections
from bulkkm.engine._admission import DEFAULT_MAX_CONNECTIONS, default_max_connections
from bulkkm.engine._options import (
    ApprovedKeyManager,
    ApprovedPlan,
    Command,
    Options,
    Resume,
    RunControl,
)
from bulkkm.engine._run import Run, exit_code
from bulkkm.events import RunFinished, Subscriber
from bulkkm.inventory import Inventory
from bulkkm.retry import RetryPolicy

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "ApprovedKeyManager",
    "ApprovedPlan",
    "Command",
    "Options",
    "Resume",
    "RetryPolicy",
    "RunControl",
    "default_max_connections",
    "exit_code",
    "run",
]


async def run(
    inventory: Inventory,
    options: Options,
    subscribers: Sequence[Subscriber],
    *,
    control: RunControl | None = None,
) -> RunFinished:
    """Run ``options.command`` over the inventory; every event goes to every subscriber.

    Async subscribers get a short while to finish their queues once the run is over.
    """
    control = control or RunControl()
    control.attach(asyncio.get_running_loop())
    with fewer_collections():
        the_run = Run(inventory, options, subscribers, control)
        try:
            return await the_run.main()
        finally:
            await the_run.fanout.drain()
