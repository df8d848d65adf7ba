"""The bridge to stamina: one unit of work's attempts, each retry told to the engine.

A unit of work (a discovery, a batch's POSTs, a read-back) is tried under the run's
``RetryPolicy``, and the predicate from ``bulkkm.retry`` decides whether a failure is tried
again and after how long (stamina's ``on=``: ``True`` backs off exponentially, a number of
seconds is a server's ``Retry-After``).

The first attempt runs bare: most units succeed at once, and stamina's loop (an iterator and
a tenacity state per use, and the garbage they leave) is set up only after a failure worth
another try. Its backoff is taken here; the loop then goes on with one attempt fewer, the
time left, and a backoff that goes on growing, so the whole is the loop stamina would have
run. Under stamina's test switch (``stamina.set_testing``), or with stamina deactivated,
the loop runs every attempt itself: the switch means what it says (no backoff, its number
of attempts), and a test never sleeps.

stamina's retry hooks are process-wide; the one installed here hands each retry to the
unit being retried, through a context variable the unit's task set.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from bulkkm.errors import OntapError
from bulkkm.retry import RetryPolicy

__all__ = ["Predicate", "Reporter", "retrying"]

T = TypeVar("T")

Predicate = Callable[[Exception], bool | float]
"""stamina's ``on=``: False gives up, True backs off, a float waits that many seconds."""
Reporter = Callable[[int, float, OntapError], None]
"""Told of each retry: the attempt that failed (from 1), the wait before the next, why."""

_reporter: contextvars.ContextVar[Callable[[RetryDetails], None]] = contextvars.ContextVar(
    "bulkkm_retry_reporter"
)


def _on_retry(details: RetryDetails) -> None:
    """stamina's hook: tell the unit being retried (its task's context knows which)."""
    reporter = _reporter.get(None)
    if reporter is not None:
        reporter(details)


# stamina's default hooks would log the retried call's arguments; ours carries only the event.
set_on_retry_hooks([_on_retry])


async def retrying(
    work: Callable[[int], Awaitable[T]],
    *,
    policy: RetryPolicy,
    on: Predicate,
    report: Reporter,
) -> T:
    """``work(attempt)`` until it succeeds, ``on`` gives up, or the policy's bounds are met.

    ``work`` gets the attempt's number (from 1); the last failure is raised as it is.
    """
    if policy.attempts < 2 or stamina.is_testing() or not stamina.is_active():
        return await _loop(work, policy, on, report, done=0, elapsed=0.0)
    clock = asyncio.get_running_loop().time
    started = clock()
    try:
        return await work(1)
    except Exception as exc:
        verdict = on(exc)
        if verdict is False:
            raise
        first = exc
    # The first backoff, as stamina's loop would take it (or what the server asked for).
    if isinstance(verdict, bool):
        wait = policy.wait_initial + random.uniform(0, policy.wait_jitter)
        wait = min(policy.wait_max, wait)
    else:
        wait = verdict
    if isinstance(first, OntapError):
        report(1, wait, first)
    del first  # not kept alive (with its traceback) across the sleep
    await asyncio.sleep(wait)
    return await _loop(work, policy, on, report, done=1, elapsed=clock() - started)


async def _loop(
    work: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    on: Predicate,
    report: Reporter,
    *,
    done: int,
    elapsed: float,
) -> T:
    """stamina's loop for the attempts after the ``done`` first ones, which took ``elapsed``."""
    attempts = stamina.retry_context(
        on=on,
        attempts=policy.attempts - done,
        timeout=max(policy.timeout - elapsed, 0.001),
        wait_initial=policy.wait_initial * 2**done,
        wait_max=policy.wait_max,
        wait_jitter=policy.wait_jitter,
    )

    def tell(details: RetryDetails) -> None:
        """Report a retry of this unit, numbered from its first attempt."""
        exc = details.caused_by
        if isinstance(exc, OntapError):
            report(details.retry_num + done, details.wait_for, exc)

    _reporter.set(tell)
    async for attempt in attempts:
        with attempt:
            return await work(attempt.num + done)
    raise AssertionError("unreachable: stamina either returns or raises")
