"""POST /prompt: converts the wire request into a `JobRequest` (`dialects/salad_request.py`) and hands it to the job
service: waits and streams the result; or answers 202 while the job runs (webhook_v2 / webhook / async: follow it at
/jobs/<id>); or streams its events (Accept: text/event-stream). Thin: staging and execution happen in the runner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream

from comfyui_api.api.progress_stream import job_event_stream, wants_event_stream
from comfyui_api.api.schemas import ERROR_RESPONSES
from comfyui_api.api.services import Services, ServicesDependency
from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.dialects.salad import AcceptedResponse, PromptRequest, PromptResponse
from comfyui_api.dialects.salad_body import SINGLE_PIECE_MAX_BYTES, inline_payload_bytes, record_body
from comfyui_api.dialects.salad_request import accepted_body, is_async, to_job_request
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.jobs.store import JobRecord

PROMPT_RESPONSES = {
    200: ResponseSpec(PromptResponse, description="The job's outputs (or its events, with Accept: text/event-stream)"),
    202: ResponseSpec(
        AcceptedResponse, description="Accepted: webhook_v2, webhook or async jobs run in the background"
    ),
    **ERROR_RESPONSES,
}
"""What `run_prompt` may answer; also documents the workflow endpoints, which answer through it."""


def job_path(job_id: str) -> str:
    return f"/jobs/{job_id}"


class PromptController(Controller):
    path = "/prompt"
    tags = ["prompts"]

    @post(
        status_code=200,
        summary="Run a ComfyUI workflow and wait for its outputs",
        response_description="The job's outputs, base64-encoded, with names, kinds and timings",
        responses=PROMPT_RESPONSES,
    )
    async def create(
        self, data: JSONBody[PromptRequest], services: ServicesDependency, request: Request[Any, Any, Any]
    ) -> Response[Any]:
        return await run_prompt(data, services, request)


async def run_prompt(body: PromptRequest, services: Services, request: Request[Any, Any, Any]) -> Response[Any]:
    """POST /prompt's handling of one body, also used by the workflow endpoints (`api/workflow_routes.py`), which
    build `body.prompt` from their `input`: both answer the same way."""
    if is_ui_format(body.prompt):
        body = msgspec.structs.replace(body, prompt=await services.api_graph(body.prompt))
    job = to_job_request(body, services.settings.jobs, services.storage)
    jobs = services.jobs
    if is_async(job):
        await jobs.submit(job)
        return Response(accepted_body(body, job_path(job.id)), status_code=202)
    if wants_event_stream(request.headers.get("accept")):
        record = await jobs.submit(job, report_queue_position=True)
        heartbeat_s = services.settings.server.sse_heartbeat_s
        return job_event_stream(
            record, jobs.registry, heartbeat_s=heartbeat_s, cancel_on_disconnect=job.cancel_on_disconnect
        )
    record = await jobs.run(job)  # held: its files stay until the body was read
    result = record.result
    assert result is not None
    failure = delivery_failure(job, result)
    status_code = failure.status_code if failure is not None else 200
    if inline_payload_bytes(result) > SINGLE_PIECE_MAX_BYTES:
        return Stream(_released_after(record), media_type="application/json", status_code=status_code)
    try:
        content = b"".join([piece async for piece in record_body(record)])
    finally:
        record.unhold()
    return Response(content, media_type="application/json", status_code=status_code)


async def _released_after(record: JobRecord) -> AsyncIterator[bytes]:
    """A large body streamed from the kept files; the record's hold (taken by `JobService.run`) ends with it."""
    try:
        async for piece in record_body(record):
            yield piece
    finally:
        record.unhold()
