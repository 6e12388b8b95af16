"""A job's webhooks, as one more listener of the job service: once a job's record holds its outcome, `webhook_v2`
gets one signed `prompt.complete` (the synchronous body, streamed from the kept files) or `prompt.failed`, and the
deprecated `webhook` its per-output `output.complete` POSTs or `prompt.failed`. The record's `webhook` state says
how it went; `redeliver` sends it again (a receiver that was down past every retry can still get it).

Never removes output files: the job store owns them (the record is held while a delivery reads them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from comfyui_api.delivery.sender import DeliveryOutcome
from comfyui_api.delivery.webhooks import PROMPT_COMPLETE, PROMPT_FAILED, WebhookDelivery, failed_payload
from comfyui_api.dialects.runpod import status_body as runpod_status_body
from comfyui_api.dialects.salad_body import result_body, stats_body
from comfyui_api.errors import ComfyApiError, InvalidRequest
from comfyui_api.jobs.model import JobRequest, JobResult
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.jobs.store import JobRecord

log = logging.getLogger(__name__)


class JobWebhooks:
    """Register with `JobService.add_listener`; `aclose` waits (bounded) for the deliveries still running."""

    def __init__(self, webhooks: WebhookDelivery, *, on_change: Callable[[JobRecord], None] = lambda _: None):
        self._webhooks = webhooks
        self._on_change = on_change  # the record's webhook state changed (a journaling store writes it)
        self._tasks: set[asyncio.Task[None]] = set()

    def job_ended(self, record: JobRecord) -> None:
        if record.webhook is None:
            return
        record.acquire()  # the output files stay until the deliveries have read them (`_send` lets go)
        task = asyncio.create_task(self._send(record), name=f"job-webhook:{record.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def redeliver(self, record: JobRecord) -> None:
        """Send the job's webhook again now (in the background); InvalidRequest when it has none or is running."""
        if record.webhook is None:
            raise InvalidRequest(f"job {record.id} has no webhook", field="id")
        if not record.is_terminal:
            raise InvalidRequest(f"job {record.id} has not ended yet; its webhook is sent when it does", field="id")
        record.webhook.state, record.webhook.last_error = "pending", None
        self._on_change(record)
        self.job_ended(record)

    async def aclose(self, timeout_s: float) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout_s))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, record: JobRecord) -> None:
        state = record.webhook
        assert state is not None
        stage = record.trace.stage("deliver")
        try:
            outcomes = await self._deliveries(record)
        except Exception as exc:  # task boundary: a delivery bug is recorded, never raised into the service
            log.exception("job %s: its webhook could not be sent", record.id)
            outcomes = [DeliveryOutcome(False, 0, None, f"internal error: {type(exc).__name__}")]
        finally:
            record.unhold()
        state.attempts += sum(outcome.attempts for outcome in outcomes)
        failed = [outcome for outcome in outcomes if not outcome.delivered]
        state.state = "failed" if failed else "delivered"
        state.last_error = failed[-1].error if failed else None
        stage.end(ComfyApiError(f"webhook not delivered: {state.last_error}") if failed else None)
        self._on_change(record)

    async def _deliveries(self, record: JobRecord) -> list[DeliveryOutcome]:
        job = record.request
        tasks: list[asyncio.Task[DeliveryOutcome]] = []
        if record.result is not None:
            failure = delivery_failure(job, record.result)
            if job.webhook_v1_url is not None:
                tasks += await self._v1_completed(job, job.webhook_v1_url, record.result, failure)
            if job.webhook_v2_url is not None:
                tasks.append(self._v2_completed(job, job.webhook_v2_url, record.result, failure))
        else:
            error = record.error or ComfyApiError(f"job {record.id} ended without an outcome")
            if job.webhook_v1_url is not None:
                tasks.append(self._webhooks.submit_v1_failed(job.webhook_v1_url, job.id, prompt=job.graph, error=error))
            if job.webhook_v2_url is not None:
                tasks.append(self._webhooks.submit(job.webhook_v2_url, PROMPT_FAILED, job.id, _failed(job, error)))
        if job.webhook_runpod_url is not None:  # the job's /status body, whatever the outcome (as RunPod sends it)
            status = await asyncio.to_thread(runpod_status_body, record)
            tasks.append(self._webhooks.submit_plain(job.webhook_runpod_url, job.id, status, "RunPod webhook"))
        return list(await asyncio.gather(*tasks))

    def _v2_completed(
        self, job: JobRequest, url: str, result: JobResult, failure: ComfyApiError | None
    ) -> asyncio.Task[DeliveryOutcome]:
        if failure is not None:
            return self._webhooks.submit(url, PROMPT_FAILED, job.id, _failed(job, failure, graph=result.graph))

        def body() -> AsyncIterator[bytes]:
            return result_body(result, discard_files=False, metadata=job.metadata)

        return self._webhooks.submit_streamed(url, PROMPT_COMPLETE, job.id, body)

    async def _v1_completed(
        self, job: JobRequest, url: str, result: JobResult, failure: ComfyApiError | None
    ) -> list[asyncio.Task[DeliveryOutcome]]:
        if failure is not None:
            return [self._webhooks.submit_v1_failed(url, result.id, prompt=result.graph, error=failure)]
        files = [(output.filename, output.path) for output in result.outputs if output.path is not None]
        stats = stats_body(result.stats)
        return await self._webhooks.submit_v1_outputs(url, result.id, prompt=result.graph, stats=stats, files=files)


def _failed(job: JobRequest, error: ComfyApiError, *, graph: Any = None) -> dict[str, Any]:
    payload = failed_payload(job.id, job.graph if graph is None else graph, error)
    if job.metadata is not None:
        payload["metadata"] = job.metadata
    return payload
