"""Server-Sent Events for one job: `JobEventChannel` (a non-blocking EventSink with a bounded buffer) and
`sse_stream(...)` (an async generator of `text/event-stream` bytes, usable as a Litestar `Stream` body).

Usage: `channel = JobEventChannel(job_id)`; register `channel` as the job's EventSink; return
`Stream(sse_stream(channel, serialize_complete=...), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)`.
Frames, in order: `queued`, `started`, `executing`, `progress`, `preview`, `output`, then exactly one of
`complete` / `failed`. Closing the generator (client gone) closes the channel and nothing else: the job keeps running.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from types import MappingProxyType
from typing import Any

import msgspec

from comfyui_api.delivery.sender import aclose_body
from comfyui_api.jobs.model import (
    JobCompleted,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResult,
    JobStarted,
    NodeExecuting,
    OutputReady,
    PreviewProduced,
    ProgressUpdated,
)

logger = logging.getLogger(__name__)

HEARTBEAT = b": keep-alive\n\n"
SSE_MEDIA_TYPE = "text/event-stream"
# no caching and no proxy buffering of a live stream
SSE_HEADERS: Mapping[str, str] = MappingProxyType({"cache-control": "no-cache", "x-accel-buffering": "no"})

SerializeComplete = Callable[[JobResult], Mapping[str, Any] | Awaitable[Mapping[str, Any]] | AsyncIterator[bytes]]
"""The `complete` event's data: a mapping (or an awaitable of one), or the bytes of one compact JSON object given
piece by piece, sent as they come (a body with base64 outputs need not be held in memory)."""

# Under pressure the cheapest events go first; anything not listed (queued-to-terminal milestones and outputs) is
# never dropped. JobQueued is droppable because a later position supersedes an earlier one.
_DROP_RANK: dict[type[JobEvent], int] = {PreviewProduced: 0, ProgressUpdated: 1, NodeExecuting: 2, JobQueued: 3}
_KEEP = 99


def _rank(event: JobEvent) -> int:
    return _DROP_RANK.get(type(event), _KEEP)


class JobEventChannel:
    """An EventSink for one job. `__call__` never blocks and never raises; call it from the event loop's thread.

    Holds at most `max_events` droppable events: past that, a new progress event replaces the newest queued one,
    and otherwise the oldest event of the lowest rank goes (previews, then progress, executing, queued). Outputs
    and the terminal event are always kept. Previews are throttled to `max_previews_per_s` (0 disables them).
    A deque plus an asyncio.Event rather than an asyncio.Queue: eviction by rank needs to reach queued items.
    """

    def __init__(
        self,
        job_id: str,
        *,
        max_events: int = 256,
        max_previews_per_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.job_id = job_id
        self._max_events = max(1, max_events)
        self._preview_interval_s = 1.0 / max_previews_per_s if max_previews_per_s > 0 else None
        self._clock = clock
        self._events: deque[JobEvent] = deque()
        self._ready = asyncio.Event()
        self._last_preview_at: float | None = None
        self._terminal_seen = False
        self.closed = False
        self.dropped_events = 0

    def __call__(self, event: JobEvent) -> None:
        if self.closed or self._terminal_seen or event.job_id != self.job_id:
            return
        if isinstance(event, PreviewProduced) and not self._preview_due():
            self.dropped_events += 1
            return
        if isinstance(event, JobCompleted | JobFailed):
            self._terminal_seen = True
        elif len(self._events) >= self._max_events and not self._make_room(event):
            self.dropped_events += 1
            return
        self._events.append(event)
        self._ready.set()

    async def next_event(self, timeout_s: float) -> JobEvent | None:
        """The next event, or None when nothing arrived within `timeout_s`."""
        if not self._events:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        return self._events.popleft() if self._events else None

    def close(self) -> None:
        """Stop accepting events and free the buffer; the producer is unaffected."""
        self.closed = True
        self._events.clear()

    def _preview_due(self) -> bool:
        if self._preview_interval_s is None:
            return False
        now = self._clock()
        if self._last_preview_at is not None and now - self._last_preview_at < self._preview_interval_s:
            return False
        self._last_preview_at = now
        return True

    def _make_room(self, incoming: JobEvent) -> bool:
        """Free one slot for `incoming`; False when `incoming` itself is the one to drop."""
        if isinstance(incoming, ProgressUpdated):
            for index in range(len(self._events) - 1, -1, -1):
                if isinstance(self._events[index], ProgressUpdated):
                    del self._events[index]  # coalesce: the newer value supersedes it
                    self.dropped_events += 1
                    return True
        incoming_rank = _rank(incoming)
        victim, victim_rank = None, _KEEP
        for index, queued in enumerate(self._events):
            rank = _rank(queued)
            if rank < victim_rank:
                victim, victim_rank = index, rank
        if victim is not None and (victim_rank <= incoming_rank or incoming_rank == _KEEP):
            del self._events[victim]
            self.dropped_events += 1
            return True
        # Nothing cheaper to drop: a droppable newcomer is dropped, a milestone is kept over the bound.
        return incoming_rank == _KEEP


def sse_frame(event: str, data: Any) -> bytes:
    """One SSE frame: `event: <name>` and the JSON data (compact JSON has no raw newlines, so one data line)."""
    return b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


def _output_data(job_id: str, event: OutputReady) -> dict[str, Any]:
    out = event.output
    data: dict[str, Any] = {
        "id": job_id,
        "node": out.node_id,
        "kind": out.kind,
        "filename": out.filename,
        "subfolder": out.subfolder,
        "type": out.comfy_type,
        "content_type": out.content_type,
        "size_bytes": out.size_bytes,
        "url": out.url,
    }
    if out.error is not None:
        data["error"] = out.error
    if out.note is not None:
        data["note"] = out.note
    return data


def event_frame(event: JobEvent) -> bytes | None:
    """The frame for a non-terminal event (None for an event type the stream does not show)."""
    job_id = event.job_id
    match event:
        case JobQueued(position=position):
            return sse_frame("queued", {"id": job_id, "position": position})
        case JobStarted():
            return sse_frame("started", {"id": job_id})
        case NodeExecuting(node_id=node_id, class_type=class_type):
            return sse_frame("executing", {"id": job_id, "node": node_id, "class_type": class_type})
        case ProgressUpdated(node_id=node_id, value=value, max=maximum, percent=percent):
            data = {"id": job_id, "node": node_id, "value": value, "max": maximum, "percent": percent}
            return sse_frame("progress", data)
        case PreviewProduced(node_id=node_id, content_type=content_type, data=image):
            encoded = base64.b64encode(image).decode("ascii")
            return sse_frame("preview", {"id": job_id, "node": node_id, "content_type": content_type, "image": encoded})
        case OutputReady():
            return sse_frame("output", _output_data(job_id, event))
    return None


async def _streamed_complete(pieces: AsyncIterator[bytes], job_id: str) -> AsyncGenerator[bytes, None]:
    """`event: complete` with the data line sent piece by piece. Compact JSON holds no raw newline, so it stays one
    data line. A failure half way cannot become a `failed` event any more: the frame is left unterminated."""
    yield b"event: complete\ndata: "
    try:
        async for piece in pieces:
            yield piece
    except Exception:  # boundary: log with the id; the client sees the stream end without a complete frame
        logger.exception("job %s: the complete event broke off while it was being sent", job_id)
        return
    finally:
        await aclose_body(pieces)
    yield b"\n\n"


async def _terminal_frames(
    event: JobCompleted | JobFailed, serialize_complete: SerializeComplete
) -> AsyncGenerator[bytes, None]:
    if isinstance(event, JobFailed):
        yield sse_frame("failed", {"id": event.job_id, "error": event.error.to_dict()})
        return
    try:
        body = serialize_complete(event.result)
    except Exception as exc:  # boundary: the stream must still end with exactly one terminal frame
        yield _serialisation_failed(event.job_id, exc)
        return
    if isinstance(body, AsyncIterator):
        async for piece in _streamed_complete(body, event.job_id):
            yield piece
    else:
        yield await _complete_frame(event.job_id, body)


async def _complete_frame(job_id: str, body: Mapping[str, Any] | Awaitable[Mapping[str, Any]]) -> bytes:
    try:
        if inspect.isawaitable(body):
            body = await body
        # The complete body may carry base64 outputs of many megabytes: encode off the event loop.
        return await asyncio.to_thread(sse_frame, "complete", body)
    except Exception as exc:  # boundary: the stream must still end with exactly one terminal frame
        return _serialisation_failed(job_id, exc)


def _serialisation_failed(job_id: str, exc: Exception) -> bytes:
    logger.error("job %s: could not serialise the complete event", job_id, exc_info=exc)
    error = {"type": "internal_error", "message": f"could not serialise the result: {type(exc).__name__}"}
    return sse_frame("failed", {"id": job_id, "error": error})


async def sse_stream(
    channel: JobEventChannel, *, heartbeat_s: float = 15.0, serialize_complete: SerializeComplete
) -> AsyncGenerator[bytes, None]:
    """Frames for the channel's job until its terminal event; `: keep-alive` after `heartbeat_s` of silence.

    `serialize_complete(result)` gives the body a synchronous request would get (see `SerializeComplete`). When the
    consumer stops iterating (aclose, or the task being cancelled), the channel is closed; the job is not touched.
    """
    try:
        while True:
            event = await channel.next_event(heartbeat_s)
            if event is None:
                yield HEARTBEAT
            elif isinstance(event, JobCompleted | JobFailed):
                async for piece in _terminal_frames(event, serialize_complete):
                    yield piece
                return
            else:
                frame = event_frame(event)
                if frame is not None:
                    yield frame
    finally:
        channel.close()
