"""Server-Sent Events for one job: `sse_stream(events, ...)` turns a job's sequenced events (its event log, replayed
then followed: `jobs.broker.JobEventLog.follow_batches`) into `text/event-stream` bytes, usable as a Litestar
`Stream` body.

Frames, in order: `queued`, `started`, `executing`, `progress`, `preview`, `output`, then exactly one of
`complete` / `failed`; each carries `id: <sequence number>` so a client can resume with `Last-Event-ID`. Closing
the generator (client gone) stops reading and nothing else: the job keeps running.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import msgspec

from comfyui_api.delivery.sender import aclose_body
from comfyui_api.jobs.broker import SequencedEvent
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
# Terminal frames up to this size are encoded once and sent to every reader of the job's stream (fifty readers of
# one job then cost one read of its outputs, not fifty); larger ones stream to each reader from disk.
SHARED_TERMINAL_MAX_BYTES = 1024 * 1024
# no caching and no proxy buffering of a live stream
SSE_HEADERS: Mapping[str, str] = MappingProxyType({"cache-control": "no-cache", "x-accel-buffering": "no"})

SerializeComplete = Callable[[JobResult], Mapping[str, Any] | Awaitable[Mapping[str, Any]] | AsyncIterator[bytes]]
"""The `complete` event's data: a mapping (or an awaitable of one), or the bytes of one compact JSON object given
piece by piece, sent as they come (a body with base64 outputs need not be held in memory)."""


def sse_frame(event: str, data: Any, seq: int | None = None) -> bytes:
    """One SSE frame: `id: <seq>`, `event: <name>` and the JSON data (compact JSON has no raw newlines, so one data
    line)."""
    head = b"id: %d\n" % seq if seq is not None else b""
    return head + b"event: " + event.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"


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


def event_frame(event: JobEvent, seq: int | None = None) -> bytes | None:
    """The frame for a non-terminal event (None for an event type the stream does not show)."""
    job_id = event.job_id
    match event:
        case JobQueued(position=position):
            return sse_frame("queued", {"id": job_id, "position": position}, seq)
        case JobStarted():
            return sse_frame("started", {"id": job_id}, seq)
        case NodeExecuting(node_id=node_id, class_type=class_type):
            return sse_frame("executing", {"id": job_id, "node": node_id, "class_type": class_type}, seq)
        case ProgressUpdated(node_id=node_id, value=value, max=maximum, percent=percent):
            data = {"id": job_id, "node": node_id, "value": value, "max": maximum, "percent": percent}
            return sse_frame("progress", data, seq)
        case PreviewProduced(node_id=node_id, content_type=content_type, data=image):
            encoded = base64.b64encode(image).decode("ascii")
            data = {"id": job_id, "node": node_id, "content_type": content_type, "image": encoded}
            return sse_frame("preview", data, seq)
        case OutputReady():
            return sse_frame("output", _output_data(job_id, event), seq)
    return None


async def _streamed_complete(pieces: AsyncIterator[bytes], job_id: str, seq: int) -> AsyncGenerator[bytes, None]:
    """`event: complete` with the data line sent piece by piece. Compact JSON holds no raw newline, so it stays one
    data line. A failure half way cannot become a `failed` event any more: the frame is left unterminated."""
    yield b"id: %d\nevent: complete\ndata: " % seq
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
    item: SequencedEvent, serialize_complete: SerializeComplete, metadata: Mapping[str, Any] | None
) -> AsyncGenerator[bytes, None]:
    event = item.event
    if isinstance(event, JobFailed):
        data: dict[str, Any] = {"id": event.job_id, "error": event.error.to_dict()}
        if metadata is not None:
            data["metadata"] = metadata
        yield sse_frame("failed", data, item.seq)
        return
    assert isinstance(event, JobCompleted)
    try:
        body = serialize_complete(event.result)
    except Exception as exc:  # boundary: the stream must still end with exactly one terminal frame
        yield _serialisation_failed(event.job_id, exc, item.seq)
        return
    if isinstance(body, AsyncIterator):
        async for piece in _streamed_complete(body, event.job_id, item.seq):
            yield piece
    else:
        yield await _complete_frame(event.job_id, body, item.seq)


async def _shared_terminal(
    item: SequencedEvent, serialize_complete: SerializeComplete, metadata: Mapping[str, Any] | None
) -> AsyncGenerator[bytes, None]:
    """The terminal frame, built once for all the readers of the stream when it is at most
    `SHARED_TERMINAL_MAX_BYTES` (the first reader keeps it on the event; see `SequencedEvent.encoded`), else streamed
    to each reader on its own, piece by piece, so that a large result is never held in memory."""
    if item.encoded is not None:
        yield item.encoded
        return
    held: list[bytes] | None = []
    size = 0
    pieces = _terminal_frames(item, serialize_complete, metadata)
    try:
        async for piece in pieces:
            if held is None:
                yield piece
                continue
            held.append(piece)
            size += len(piece)
            if size > SHARED_TERMINAL_MAX_BYTES:
                yield b"".join(held)
                held = None
    finally:
        await pieces.aclose()
    if held is not None:
        frame = b"".join(held)
        if frame.endswith(b"\n\n"):  # a whole frame: one that broke off half way is not for others
            item.encoded = frame
        yield frame


async def _complete_frame(job_id: str, body: Mapping[str, Any] | Awaitable[Mapping[str, Any]], seq: int) -> bytes:
    try:
        if inspect.isawaitable(body):
            body = await body
        # The complete body may carry base64 outputs of many megabytes: encode off the event loop.
        return await asyncio.to_thread(sse_frame, "complete", body, seq)
    except Exception as exc:  # boundary: the stream must still end with exactly one terminal frame
        return _serialisation_failed(job_id, exc, seq)


def _serialisation_failed(job_id: str, exc: Exception, seq: int) -> bytes:
    logger.error("job %s: could not serialise the complete event", job_id, exc_info=exc)
    error = {"type": "internal_error", "message": f"could not serialise the result: {type(exc).__name__}"}
    return sse_frame("failed", {"id": job_id, "error": error}, seq)


async def sse_stream(
    events: AsyncIterator[Sequence[SequencedEvent] | None],
    *,
    serialize_complete: SerializeComplete,
    metadata: Mapping[str, Any] | None = None,
    max_previews_per_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[bytes, None]:
    """Frames for a job's events up to its terminal one; `: keep-alive` for each None (a quiet spell).

    `events` gives the events a batch at a time (`JobEventLog.follow_batches`): the frames of one batch go out as one
    piece. `serialize_complete(result)` gives the body a synchronous request would get (see `SerializeComplete`);
    `metadata` goes into the `failed` frame. Previews are sent at most `max_previews_per_s` a second (0: none). When
    the consumer stops iterating (aclose, or the task being cancelled), `events` is closed; the job is not touched.
    """
    preview_interval_s = 1.0 / max_previews_per_s if max_previews_per_s > 0 else None
    last_preview_s: float | None = None
    try:
        async for batch in events:
            if batch is None:
                yield HEARTBEAT
                continue
            frames: list[bytes] = []
            for item in batch:
                event = item.event
                if isinstance(event, JobCompleted | JobFailed):
                    if frames:
                        yield b"".join(frames)
                    async for piece in _shared_terminal(item, serialize_complete, metadata):
                        yield piece
                    return
                if isinstance(event, PreviewProduced):
                    now_s = clock()
                    if preview_interval_s is None or (
                        last_preview_s is not None and now_s - last_preview_s < preview_interval_s
                    ):
                        continue
                    last_preview_s = now_s
                if item.encoded is None:
                    item.encoded = event_frame(event, item.seq) or b""
                if item.encoded:
                    frames.append(item.encoded)
            if frames:
                yield frames[0] if len(frames) == 1 else b"".join(frames)
    finally:
        await aclose_body(events)
