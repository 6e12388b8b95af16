"""Jobs that outlive their HTTP request: `webhook_v2` / `webhook` / `async` jobs answered 202 at once, and streamed
(SSE) jobs. `AsyncJobs` starts each in the background, tracks it until its outcome was handed on, and sends that
outcome to the job's webhooks: `prompt.complete` carries the synchronous body, streamed from disk.

Wire-level only (the delivery fields of POST /prompt and the bodies sent); running the job is the runner's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from comfyui_api.api.result_stream import result_body, stats_body
from comfyui_api.api.schemas import AcceptedResponse, PromptRequest
from comfyui_api.delivery.webhooks import PROMPT_COMPLETE, PROMPT_FAILED, WebhookDelivery, failed_payload
from comfyui_api.errors import ComfyApiError, InvalidRequest, JobCancelled
from comfyui_api.jobs.model import EventSink, JobEvent, JobRequest, JobResult
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.jobs.outputs import discard
from comfyui_api.jobs.runner import JobRunner

log = logging.getLogger(__name__)

_UPLOAD_FIELDS = "s3, azure_blob_upload, hf_upload or http_upload"


def _webhook_url(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    url = value.strip()
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise InvalidRequest(f"{field} must be an http:// or https:// URL", field=field)
    return url


def with_delivery_fields(job: JobRequest, body: PromptRequest) -> JobRequest:
    """`job` with the request's webhook, `async` and `cancel_on_disconnect` fields; 400 naming the field when wrong."""
    v2_url = _webhook_url(body.webhook_v2, "webhook_v2")
    v1_url = _webhook_url(body.webhook, "webhook")
    if body.run_async and v2_url is None and v1_url is None and job.upload is None:
        raise InvalidRequest(
            f"async: true needs somewhere to deliver the outputs: a webhook_v2 (or webhook) URL or an upload target "
            f"({_UPLOAD_FIELDS})",
            field="async",
        )
    return dataclasses.replace(
        job,
        webhook_v2_url=v2_url,
        webhook_v1_url=v1_url,
        run_async=job.run_async or body.run_async or v2_url is not None or v1_url is not None,
        cancel_on_disconnect=body.cancel_on_disconnect,
    )


def is_async(job: JobRequest) -> bool:
    """Whether the job is answered 202 at once and reports its outcome elsewhere."""
    return job.run_async or job.webhook_v2_url is not None or job.webhook_v1_url is not None


class JobOutcome(Protocol):
    """Where a background job's end goes. Owns the result's output files once `completed` is called."""

    async def completed(self, result: JobResult) -> None: ...

    async def failed(self, error: ComfyApiError) -> None: ...


def _ignore(_: JobEvent) -> None:
    """A webhook job reports its end only."""


class WebhookOutcome:
    """Sends a job's end to its webhooks: v2 (signed, one event) and/or the deprecated v1 (one POST per output)."""

    def __init__(self, job: JobRequest, webhooks: WebhookDelivery):
        self._job = job
        self._webhooks = webhooks

    async def completed(self, result: JobResult) -> None:
        job = self._job
        failure = delivery_failure(job, result)
        try:
            if job.webhook_v1_url is not None:
                await self._v1_completed(job.webhook_v1_url, result, failure)
            if job.webhook_v2_url is not None and failure is None:
                self._v2_completed(job.webhook_v2_url, result)
                return  # the delivery removes the output files once it has ended
            if job.webhook_v2_url is not None and failure is not None:
                payload = failed_payload(job.id, result.graph, failure)
                self._webhooks.submit(job.webhook_v2_url, PROMPT_FAILED, job.id, payload)
            elif failure is not None:
                log.warning("job %s (async): %s", job.id, failure.message)
        except BaseException:
            discard(result.outputs)
            raise
        discard(result.outputs)

    async def failed(self, error: ComfyApiError) -> None:
        job = self._job
        if job.webhook_v1_url is not None:
            self._webhooks.submit_v1_failed(job.webhook_v1_url, job.id, prompt=job.graph, error=error)
        if job.webhook_v2_url is not None:
            self._webhooks.submit(job.webhook_v2_url, PROMPT_FAILED, job.id, failed_payload(job.id, job.graph, error))
        if job.webhook_v1_url is None and job.webhook_v2_url is None:
            log.warning("job %s (async, no webhook) failed: %s", job.id, error.message)

    async def _v1_completed(self, url: str, result: JobResult, failure: ComfyApiError | None) -> None:
        if failure is not None:
            self._webhooks.submit_v1_failed(url, result.id, prompt=result.graph, error=failure)
            return
        files = [(output.filename, output.path) for output in result.outputs if output.path is not None]
        stats = stats_body(result.stats)
        # Reads (and base64-encodes) every file before it returns, so the files may go afterwards.
        await self._webhooks.submit_v1_outputs(url, result.id, prompt=result.graph, stats=stats, files=files)

    def _v2_completed(self, url: str, result: JobResult) -> None:
        def body() -> AsyncIterator[bytes]:
            return result_body(result, discard_files=False)

        delivery = self._webhooks.submit_streamed(url, PROMPT_COMPLETE, result.id, body)
        delivery.add_done_callback(lambda _: discard(result.outputs))


class AsyncJobs:
    """Background jobs of one server. `start` refuses at once (queue full, ComfyUI not ready, id in use) and
    otherwise returns while the job runs; `aclose` waits (bounded) for the outcomes still being handed on."""

    def __init__(self, runner: JobRunner, webhooks: WebhookDelivery):
        self._runner = runner
        self._webhooks = webhooks
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def accept(self, job: JobRequest) -> AcceptedResponse:
        """Start a webhook/async job; the 202 body. Nothing has been downloaded or queued yet."""
        self.start(job, _ignore, WebhookOutcome(job, self._webhooks))
        return AcceptedResponse(id=job.id)

    def start(
        self, job: JobRequest, sink: EventSink, outcome: JobOutcome, *, report_queue_position: bool = False
    ) -> None:
        job_task = self._runner.start(job, sink, report_queue_position=report_queue_position)
        follower = asyncio.create_task(self._follow(job, job_task, outcome), name=f"job-outcome:{job.id}")
        self._tasks.add(follower)
        follower.add_done_callback(self._tasks.discard)

    async def aclose(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for outcomes being handed on (jobs are drained before this), then cancel them."""
        tasks = set(self._tasks)
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=max(0.0, timeout_s))
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("abandoning the outcome of %d background job(s) at shutdown", len(unfinished))
            await asyncio.gather(*unfinished, return_exceptions=True)

    @staticmethod
    async def _follow(job: JobRequest, job_task: asyncio.Task[JobResult], outcome: JobOutcome) -> None:
        # asyncio.wait, not await: cancelling this follower must never cancel the job itself.
        await asyncio.wait([job_task])
        try:
            if job_task.cancelled():
                await outcome.failed(JobCancelled(f"job {job.id} was cancelled"))
                return
            error = job_task.exception()
            if error is None:
                await outcome.completed(job_task.result())
            elif isinstance(error, ComfyApiError):
                await outcome.failed(error)
            else:  # the runner turns every failure into a ComfyApiError; this is a last resort
                await outcome.failed(ComfyApiError(f"internal error while running job {job.id}"))
        except Exception:  # task boundary: one job's delivery problem must not go unreported or reach others
            log.exception("job %s: its outcome could not be handed on", job.id)
