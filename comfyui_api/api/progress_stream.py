"""POST /prompt with `Accept: text/event-stream`: the job's live progress as Server-Sent Events, ending with exactly
one `complete` (the synchronous body, streamed from disk) or `failed` (the structured error).

The job runs in the background (`AsyncJobs`): a client that goes away leaves it running unless the request said
`cancel_on_disconnect: true`. Frames are built by `delivery/sse.py`; this module only wires a job to them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from litestar.response import Stream

from comfyui_api.api.async_jobs import AsyncJobs
from comfyui_api.api.result_stream import result_body
from comfyui_api.delivery.sse import SSE_HEADERS, SSE_MEDIA_TYPE, JobEventChannel, sse_stream
from comfyui_api.errors import ComfyApiError
from comfyui_api.jobs.model import JobRequest, JobResult
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.jobs.outputs import discard
from comfyui_api.jobs.registry import JobRegistry

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


class StreamedResult:
    """The result of a streamed job changes hands once: the stream takes it to send the `complete` event, or,
    when the client has gone, its output files are removed. Doubles as the job's `JobOutcome`."""

    def __init__(self, job: JobRequest, channel: JobEventChannel):
        self._job = job
        self._channel = channel
        self._result: JobResult | None = None
        self._settled = False

    def take(self, result: JobResult) -> AsyncIterator[bytes]:
        """`serialize_complete` for the stream: the synchronous body, whose reading removes the files."""
        self._settled = True
        return result_body(result, failure=delivery_failure(self._job, result))

    def release(self) -> None:
        """The stream is over: a result it did not take is discarded now (or as soon as it exists)."""
        if self._result is not None and not self._settled:
            self._settled = True
            discard(self._result.outputs)

    async def completed(self, result: JobResult) -> None:
        self._result = result
        if self._channel.closed:
            self.release()

    async def failed(self, error: ComfyApiError) -> None:
        """Nothing to hand on: the runner has already put `JobFailed` on the channel."""


def _cancel_abandoned(registry: JobRegistry, job_id: str) -> None:
    if job_id in registry:
        entry = registry.get(job_id)
        if not entry.status.is_terminal:
            entry.request_cancel("cancelled: the event-stream client disconnected")


async def _frames(
    channel: JobEventChannel, handoff: StreamedResult, job: JobRequest, registry: JobRegistry, heartbeat_s: float
) -> AsyncIterator[bytes]:
    frames = sse_stream(channel, heartbeat_s=heartbeat_s, serialize_complete=handoff.take)
    finished = False
    try:
        async for frame in frames:
            yield frame
        finished = True
    finally:
        # Synchronous clean-up first: on a disconnect this runs inside a cancelled scope.
        if not finished and job.cancel_on_disconnect:
            log.info("job %s: the event-stream client went away; cancelling the job as it asked", job.id)
            _cancel_abandoned(registry, job.id)
        elif not finished:
            log.info("job %s: the event-stream client went away; the job runs on", job.id)
        channel.close()
        handoff.release()
        await frames.aclose()


def progress_response(jobs: AsyncJobs, registry: JobRegistry, job: JobRequest, *, heartbeat_s: float) -> Stream:
    """Start `job` in the background and answer with its event stream (refusals are raised before any byte)."""
    channel = JobEventChannel(job.id)
    handoff = StreamedResult(job, channel)
    jobs.start(job, channel, handoff, report_queue_position=True)
    return Stream(
        _frames(channel, handoff, job, registry, heartbeat_s), media_type=SSE_MEDIA_TYPE, headers=dict(SSE_HEADERS)
    )
