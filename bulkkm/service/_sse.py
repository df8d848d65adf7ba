"""Server-sent events: a run's journal streamed to a client, live, from any point.

Each engine event is one SSE message: ``id:`` its line in the run's journal (the event's
``seq`` for a one-phase run), ``data:`` its JSON from ``bulkkm.codec``. A client resumes
with ``Last-Event-ID``; ``?cluster=NAME`` leaves out events about other clusters (run-wide
ones, such as the run's start and end, are kept). When the run is over and every event is
sent, an ``event: end`` message carries the run's state and the stream closes; a client
reconnecting past the end gets ``204 No Content``, which tells a browser's ``EventSource``
to stop. The stream reads the journal file at the client's own pace: a slow client falls
behind without holding up the run or anyone else. A comment every 15 s keeps idle
connections open through proxies.
"""

from __future__ import annotations

import asyncio
from typing import Final

import orjson
from aiohttp import web

from bulkkm.service._errors import BadRequest
from bulkkm.service._journal import JournalReader, line_count
from bulkkm.service._model import TERMINAL
from bulkkm.service._runs import RunManager

__all__ = ["stream_events"]

HEARTBEAT: Final = 15.0
FLUSH_AT: Final = 1 << 16
"""Bytes of messages gathered before one write to the client."""


async def stream_events(
    request: web.Request, manager: RunManager, run_id: str
) -> web.StreamResponse:
    """``GET /runs/{id}/events``."""
    record = await manager.get(run_id)
    last = _last_event_id(request)
    cluster = request.query.get("cluster")
    path = manager.files(run_id).events
    if record.state in TERMINAL and last and last >= line_count(path):
        return web.Response(status=204)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    reader = JournalReader(path)
    ended = False
    try:
        while not manager.closing:
            woken = manager.waiter(run_id)
            await _send(response, reader, last, cluster)
            record = await manager.get(run_id)
            if record.state in TERMINAL:
                ended = True
                await _send(response, reader, last, cluster)  # what came before the end
                end = {"state": record.state.value, "exit_code": record.exit_code}
                await response.write(b"event: end\ndata: " + orjson.dumps(end) + b"\n\n")
                break
            try:
                await asyncio.wait_for(woken.wait(), HEARTBEAT)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
    except ConnectionResetError:
        pass  # the client left
    finally:
        reader.close()
        if ended:
            manager.finished_with(run_id)
    return response


async def _send(
    response: web.StreamResponse, reader: JournalReader, last: int, cluster: str | None
) -> None:
    """Every journal line not sent yet (past ``last``, about ``cluster``), as SSE messages."""
    out = bytearray()
    for number, line in reader.read():
        if number <= last or (cluster is not None and not _about(line, cluster)):
            continue
        out += b"id: %d\ndata: %s\n\n" % (number, line)
        if len(out) >= FLUSH_AT:
            await response.write(bytes(out))
            out.clear()
    if out:
        await response.write(bytes(out))


def _about(line: bytes, cluster: str) -> bool:
    """Whether an event concerns ``cluster`` (run-wide events concern every cluster)."""
    event = orjson.loads(line)
    if "cluster" in event:
        return bool(event["cluster"] == cluster)
    if "clusters" in event and isinstance(event["clusters"], list):
        return cluster in event["clusters"]
    return True


def _last_event_id(request: web.Request) -> int:
    """The ``Last-Event-ID`` header (or ``?last_event_id=``), 0 without one."""
    text = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0"
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"Last-Event-ID {text[:20]!r}: a whole number is expected") from None
    if value < 0:
        raise BadRequest("Last-Event-ID must be 0 or more")
    return value
