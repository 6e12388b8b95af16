"""RunPod's serverless job API on any server: `/v2/{endpoint_id}/run`, `/runsync`, `/status/{id}`, `/stream/{id}`,
`/cancel/{id}`, `/health` and `/purge-queue`, for clients written for RunPod (the runpod SDK's `Endpoint` among
them). Any endpoint id is accepted. Jobs run through the job service like every other; inputs and outputs are the
RunPod worker's (`dialects/runpod.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from comfyui_api.api.schemas import ERROR_RESPONSES
from comfyui_api.api.services import ServicesDependency
from comfyui_api.dialects.runpod import RunpodInputError, job_request, parse_input, runpod_state, status_body
from comfyui_api.dialects.salad_request import webhook_url
from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.model import JobRequest, JobStatus
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.store import JobRecord

_RUNSYNC_WAIT_MS = 90_000  # RunPod's own default before /runsync answers IN_PROGRESS
_RUNSYNC_MAX_WAIT_MS = 300_000
_BODY_FIELDS = ("input", "webhook", "policy")
_COUNTED_AS = {"completed": "completed", "failed": "failed", "cancelled": "failed", "running": "inProgress"}


def _request_of(data: Any, services: ServicesDependency) -> JobRequest:
    if not isinstance(data, Mapping):
        raise InvalidRequest("the body must be an object with an input", field="input")
    unknown = sorted(str(key) for key in data if key not in _BODY_FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; known: {', '.join(_BODY_FIELDS)}", field=unknown[0])
    webhook = data.get("webhook")
    if webhook is not None and not isinstance(webhook, str):
        raise InvalidRequest("webhook must be an http:// or https:// URL", field="webhook")
    webhook = webhook_url(webhook, "webhook")
    try:
        spec = parse_input(data.get("input"))
    except RunpodInputError as exc:
        raise InvalidRequest(
            f"invalid job input: {'; '.join(exc.details)}", field="input", details={"details": exc.details}
        ) from None
    timeout_s = _execution_timeout_s(data.get("policy"))
    job = job_request(str(uuid.uuid4()), spec, services.settings, timeout_s=timeout_s, source="runpod_api")
    # RunPod POSTs the job's /status body to `webhook` once it has ended (checked by the outbound guard on submit)
    return dataclasses.replace(job, webhook_runpod_url=webhook) if webhook else job


def _execution_timeout_s(policy: Any) -> float | None:
    if policy is None:
        return None
    if not isinstance(policy, Mapping):
        raise InvalidRequest("policy must be an object", field="policy")
    timeout_ms = policy.get("executionTimeout")
    if timeout_ms is None:
        return None
    if not isinstance(timeout_ms, int | float) or isinstance(timeout_ms, bool) or timeout_ms <= 0:
        raise InvalidRequest(
            "policy.executionTimeout must be a positive number of milliseconds", field="policy.executionTimeout"
        )
    return float(timeout_ms) / 1000.0


async def _status(record: JobRecord) -> dict[str, Any]:
    record.acquire()  # the output files stay while they are read
    try:
        return await asyncio.to_thread(status_body, record)
    finally:
        record.unhold()


_ERRORS = {code: ERROR_RESPONSES[code] for code in (400, 404, 503)}


class RunpodController(Controller):
    path = "/v2/{endpoint_id:str}"
    tags = ["runpod"]

    @post("/run", summary="RunPod: queue a job", status_code=200, responses=_ERRORS)
    async def run(
        self, endpoint_id: FromPath[str], data: JSONBody[dict[str, Any]], services: ServicesDependency
    ) -> dict[str, Any]:
        record = await services.jobs.submit(_request_of(data, services))
        return {"id": record.id, "status": "IN_QUEUE"}

    @post("/runsync", summary="RunPod: run a job and wait (then poll /status)", status_code=200, responses=_ERRORS)
    async def runsync(
        self,
        endpoint_id: FromPath[str],
        data: JSONBody[dict[str, Any]],
        services: ServicesDependency,
        wait: Annotated[
            int, QueryParameter(description="ms to wait before answering IN_PROGRESS (<= 300000)")
        ] = _RUNSYNC_WAIT_MS,
    ) -> dict[str, Any]:
        record = await services.jobs.submit(_request_of(data, services))
        record = await services.jobs.wait(record.id, min(max(wait, 0), _RUNSYNC_MAX_WAIT_MS) / 1000.0)
        return await _status(record)

    @get("/status/{job_id:str}", summary="RunPod: a job's state and output", responses=_ERRORS)
    async def status(
        self, endpoint_id: FromPath[str], job_id: FromPath[str], services: ServicesDependency
    ) -> dict[str, Any]:
        return await _status(services.jobs.get(job_id))

    @post(
        "/status/{job_id:str}",
        summary="RunPod: a job's state and output (as the SDK's local API has it)",
        status_code=200,
        responses=_ERRORS,
    )
    async def status_post(
        self, endpoint_id: FromPath[str], job_id: FromPath[str], services: ServicesDependency
    ) -> dict[str, Any]:
        return await _status(services.jobs.get(job_id))

    @get(
        "/stream/{job_id:str}",
        summary="RunPod: a job's streamed output (the whole output once it ended)",
        responses=_ERRORS,
    )
    async def stream(
        self, endpoint_id: FromPath[str], job_id: FromPath[str], services: ServicesDependency
    ) -> dict[str, Any]:
        body = await _status(services.jobs.get(job_id))
        output = body.pop("output", None)
        body["stream"] = [{"output": output}] if output is not None and "error" not in body else []
        return body

    @post("/cancel/{job_id:str}", summary="RunPod: cancel a job", status_code=200, responses=_ERRORS)
    async def cancel(
        self, endpoint_id: FromPath[str], job_id: FromPath[str], services: ServicesDependency
    ) -> dict[str, Any]:
        jobs = services.jobs
        jobs.get(job_id)  # 404 for an unknown id
        await jobs.cancel(job_id, "cancelled on request (RunPod API)")
        record = await jobs.wait(job_id, 5.0)
        return {"id": job_id, "status": runpod_state(JobStatus(record.status), record.error)}

    @get("/health", summary="RunPod: jobs by state and this worker's state", sync_to_thread=False, responses=_ERRORS)
    def health(self, endpoint_id: FromPath[str], services: ServicesDependency) -> dict[str, Any]:
        counts = job_counts(services.jobs)
        busy = counts["inProgress"] > 0
        return {"jobs": counts, "workers": {"idle": 0 if busy else 1, "running": 1 if busy else 0}}

    @post("/purge-queue", summary="RunPod: cancel every job still waiting", status_code=200, responses=_ERRORS)
    async def purge_queue(self, endpoint_id: FromPath[str], services: ServicesDependency) -> dict[str, Any]:
        jobs = services.jobs
        waiting, _ = jobs.list(status="queued", limit=500)
        removed = [
            record.id for record in waiting if await jobs.cancel(record.id, "purged from the queue (RunPod API)")
        ]
        return {"removed": len(removed), "status": "completed"}


def job_counts(jobs: JobService) -> dict[str, int]:
    counts = {"completed": 0, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0}
    records, _ = jobs.list(limit=500)
    for record in records:
        counts[_COUNTED_AS.get(record.status, "inQueue")] += 1
    return counts
