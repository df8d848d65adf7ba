"""The run's fan-out: each event stamped, then handed to every subscriber, each one isolated.

A subscriber never stops or slows a run:

- a sync subscriber is called in the run's task, in order (it must be quick: the report
  writer, the log, the progress view); one that raises is detached, the run goes on;
- an async subscriber (a coroutine function, or an object whose ``__call__`` is one: a
  service's event stream, a database writer) gets a bounded queue and a task of its own. The
  run only ever puts into the queue, never waits on it: a subscriber whose queue is full (too
  slow to keep up) is detached and its task cancelled, as is one that raises. At the end the
  run gives the async ones ``drain_seconds`` to finish their queues, then cancels the rest.

Every detachment is logged (``subscriber_detached``, with why) and handed to ``on_detach``,
where the run decides what it means: a subscriber that declares ``essential = True`` (the
report: nothing the run did after would be on record) makes the run stop starting new work.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Final, TypeGuard, TypeVar, cast

import structlog

from bulkkm.events import AsyncSubscriber, Event, Subscriber, SyncSubscriber

__all__ = ["DRAIN_SECONDS", "QUEUE_SIZE", "Fanout", "is_async", "name_of"]

QUEUE_SIZE: Final = 1024
"""Events an async subscriber may fall behind by before it is detached as too slow."""
DRAIN_SECONDS: Final = 2.0
"""How long the end of a run waits for async subscribers to finish their queues."""

log = structlog.get_logger("bulkkm")
E = TypeVar("E", bound=Event)


def is_async(subscriber: Subscriber) -> TypeGuard[AsyncSubscriber]:
    """Whether a subscriber is awaited (a coroutine function or an async ``__call__``)."""
    call = type(subscriber).__call__  # an object's own, not the type's
    return inspect.iscoroutinefunction(subscriber) or inspect.iscoroutinefunction(call)


def name_of(subscriber: Subscriber) -> str:
    """What a log line calls a subscriber: a function's name, else its class's."""
    name = getattr(subscriber, "__qualname__", None)
    return name if isinstance(name, str) else type(subscriber).__name__


class _Sink:
    """An async subscriber's queue and task."""

    __slots__ = ("queue", "subscriber", "task")

    def __init__(self, subscriber: AsyncSubscriber, size: int) -> None:
        """A queue of ``size`` events; the task starts with the first event."""
        self.subscriber = subscriber
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=size)
        self.task: asyncio.Task[None] | None = None


class Fanout:
    """Stamps each event of one run and hands it to the run's subscribers, isolated."""

    def __init__(
        self,
        subscribers: Iterable[Subscriber],
        *,
        run_id: str,
        on_detach: Callable[[Subscriber, str], None] | None = None,
        queue_size: int = QUEUE_SIZE,
        drain_seconds: float = DRAIN_SECONDS,
    ) -> None:
        """Subscribers in the order they get each event (sync ones in the run's task)."""
        self.run_id = run_id
        self._on_detach = on_detach
        self._drain_seconds = drain_seconds
        self._sync: tuple[SyncSubscriber, ...] = ()
        self._sinks: tuple[_Sink, ...] = ()
        for subscriber in subscribers:
            if is_async(subscriber):
                self._sinks += (_Sink(subscriber, queue_size),)
            else:
                self._sync += (cast(SyncSubscriber, subscriber),)
        self._seq = 0

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """The subscribers still attached."""
        return (*self._sync, *(sink.subscriber for sink in self._sinks))

    def publish(self, event: E) -> E:
        """Stamp ``event`` (run id, next sequence number, now) and hand it to every subscriber.

        Returns the stamped event. Never raises for a subscriber, never waits for one.
        """
        self._seq += 1
        event = dataclasses.replace(event, run_id=self.run_id, seq=self._seq, at=datetime.now(UTC))
        for subscriber in self._sync:
            try:
                subscriber(event)
            except Exception as exc:  # a front end must never abort a run
                self._detach(subscriber, "raised", exc)
        for sink in self._sinks:
            try:
                sink.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._detach(sink.subscriber, f"too slow: {sink.queue.maxsize} events behind")
                continue
            if sink.task is None:
                # A context of its own: the sink must not log under the cluster of the task
                # that happened to emit its first event.
                sink.task = asyncio.get_running_loop().create_task(
                    self._feed(sink), context=contextvars.Context()
                )
        return event

    async def drain(self) -> None:
        """Give async subscribers ``drain_seconds`` to finish their queues; cancel the rest."""
        sinks = [s for s in self._sinks if s.task is not None]
        try:
            if sinks:
                joined = {asyncio.ensure_future(s.queue.join()): s for s in sinks}
                done, _ = await asyncio.wait(joined, timeout=self._drain_seconds)
                for waiter, sink in joined.items():
                    waiter.cancel()
                    if waiter not in done and sink in self._sinks:
                        still = sink.queue.qsize()
                        self._detach(
                            sink.subscriber,
                            f"still busy {self._drain_seconds:g} s after the run ended "
                            f"({still} events not taken)",
                        )
        finally:
            for sink in self._sinks:
                await _cancel(sink.task)
            self._sinks = ()

    async def _feed(self, sink: _Sink) -> None:
        """One async subscriber's task: its events, in order, until detached or cancelled."""
        while True:
            event = await sink.queue.get()
            try:
                await sink.subscriber(event)
            except Exception as exc:
                self._detach(sink.subscriber, "raised", exc)
                return
            finally:
                sink.queue.task_done()

    def _detach(self, subscriber: Subscriber, why: str, exc: Exception | None = None) -> None:
        """Drop a subscriber for good, say so, and tell the run."""
        if exc is not None:
            why = f"{why} {type(exc).__name__}: {exc}"
        self._sync = tuple(s for s in self._sync if s is not subscriber)
        for sink in self._sinks:
            if sink.subscriber is subscriber:
                self._sinks = tuple(s for s in self._sinks if s is not sink)
                if sink.task is not None and sink.task is not asyncio.current_task():
                    sink.task.cancel()
                while not sink.queue.empty():  # a drain waiting on it must not wait on
                    sink.queue.get_nowait()
                    sink.queue.task_done()
        essential = bool(getattr(subscriber, "essential", False))
        log.error(
            "subscriber_detached", subscriber=name_of(subscriber), why=why, stopping=essential
        )
        if self._on_detach is not None:
            self._on_detach(subscriber, why)


async def _cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel a sink's task and wait for it to end (our own cancellation still propagates)."""
    if task is None or task.done():
        return
    task.cancel()
    await asyncio.wait((task,))
