"""A job's events as Server-Sent Events over HTTP: the answer of POST /prompt with `Accept: text/event-stream` (a
new job) and of GET /jobs/{id}/events (any job, during or after it, as often as asked, resuming after the
`Last-Event-ID` a client saw). Both read the job's one event log; each ends with exactly one `complete` (the
synchronous body, streamed from the kept files) or `failed`.

A client that goes away leaves the job running, unless the request said `cancel_on_disconnect: true`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from litestar.response import Stream

from comfyui_api.delivery.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_stream
from comfyui_api.dialects.salad_body import record_body
from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.store import JobRecord

log = logging.getLogger(__name__)


def wants_event_stream(accept: str | None) -> bool:
    """Whether an Accept header asks for `text/event-stream` (and does not refuse it with q=0)."""
    for part in (accept or "").split(","):
        media_type, *params = (piece.strip() for piece in part.split(";"))
        if media_type.lower() != "text/event-stream":
            continue
        refused = any(param.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000") for param in params)
        return not refused
    return False


def last_event_id(header: str | None) -> int:
    """The sequence number a resuming client saw last (0: from the start); 400 naming the header when unreadable."""
    if header is None or not header.strip():
        return 0
    try:
        seq = int(header.strip())
    except ValueError:
        raise InvalidRequest("Last-Event-ID must be the id of an event of this stream", field="Last-Event-ID") from None
    if seq < 0:
        raise InvalidRequest("Last-Event-ID must not be negative", field="Last-Event-ID")
    return seq


async def _held_body(record: JobRecord) -> AsyncIterator[bytes]:
    """The synchronous body of a finished job, with its files held in place while they are read."""
    with record.hold():
        async for piece in record_body(record):
            yield piece


async def _frames(
    record: JobRecord, registry: JobRegistry, *, after_seq: int, heartbeat_s: float, cancel_on_disconnect: bool
) -> AsyncIterator[bytes]:
    frames = sse_stream(
        record.events.follow_batches(after_seq, heartbeat_s=heartbeat_s),
        serialize_complete=lambda _: _held_body(record),
        metadata=record.request.metadata,
    )
    finished = False
    try:
        async for frame in frames:
            yield frame
        finished = True
    finally:
        # Synchronous clean-up first: on a disconnect this runs inside a cancelled scope.
        if not finished and cancel_on_disconnect and not record.is_terminal and record.id in registry:
            log.info("job %s: the event-stream client went away; cancelling the job as it asked", record.id)
            registry.get(record.id).request_cancel("cancelled: the event-stream client disconnected")
        elif not finished:
            log.info("job %s: the event-stream client went away; the job runs on", record.id)
        await frames.aclose()


def job_event_stream(
    record: JobRecord,
    registry: JobRegistry,
    *,
    heartbeat_s: float,
    after_seq: int = 0,
    cancel_on_disconnect: bool = False,
) -> Stream:
    """The job's events after `after_seq` (replayed, then live) as an SSE response."""
    frames = _frames(
        record, registry, after_seq=after_seq, heartbeat_s=heartbeat_s, cancel_on_disconnect=cancel_on_disconnect
    )
    return Stream(frames, media_type=SSE_MEDIA_TYPE, headers=dict(SSE_HEADERS))
