"""POST /prompt: converts the wire request into a `JobRequest`, runs it and streams the result; or answers 202 and
runs it in the background (webhook_v2 / webhook / async), or streams its events (Accept: text/event-stream).
Thin: validation of the graph, staging and execution all happen in the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream

from comfyui_api.api.async_jobs import is_async, with_delivery_fields
from comfyui_api.api.progress_stream import progress_response, wants_event_stream
from comfyui_api.api.result_stream import SINGLE_PIECE_MAX_BYTES, inline_payload_bytes, result_body
from comfyui_api.api.schemas import ERROR_RESPONSES, AcceptedResponse, PromptRequest, PromptResponse
from comfyui_api.api.services import Services, ServicesDependency
from comfyui_api.api.storage_fields import prompt_storage_fields
from comfyui_api.errors import ComfyUnavailable, InvalidRequest
from comfyui_api.jobs.model import JobEvent, JobRequest
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.settings import JobSettings
from comfyui_api.storage.registry import StorageRegistry


def job_timeout_s(requested_s: float | None, settings: JobSettings) -> float:
    """The request's timeout_s, or the server default; above PROMPT_MAX_TIMEOUT_S is a 400 naming the field."""
    if requested_s is None:
        return settings.default_timeout_s
    if requested_s > settings.max_timeout_s:
        raise InvalidRequest(f"timeout_s may be at most {settings.max_timeout_s:g}", field="timeout_s")
    return requested_s


def check_graph(graph: Mapping[str, Any]) -> None:
    """The shape ComfyUI needs to answer with node_errors rather than fail outright: nodes are objects with a string
    `class_type` and an object `inputs`. Everything else about the graph is ComfyUI's to judge."""
    if not graph:
        raise InvalidRequest("prompt must contain at least one node", field="prompt")
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            raise InvalidRequest("each node must be an object", field=f"prompt.{node_id}")
        if "class_type" in node and not isinstance(node["class_type"], str):
            raise InvalidRequest("class_type must be a string", field=f"prompt.{node_id}.class_type")
        if "inputs" in node and not isinstance(node["inputs"], dict):
            raise InvalidRequest("inputs must be an object", field=f"prompt.{node_id}.inputs")


def to_job_request(body: PromptRequest, settings: JobSettings, storage: StorageRegistry | None = None) -> JobRequest:
    check_graph(body.prompt)
    stored = prompt_storage_fields(body, storage)
    return JobRequest(
        id=body.id,
        graph=body.prompt,
        timeout_s=job_timeout_s(body.timeout_s, settings),
        run_async=stored.run_async,
        **stored.job_fields(),
    )


def _ignore(_: JobEvent) -> None:
    """A synchronous caller only wants the result; progress goes to other subscribers."""


PROMPT_RESPONSES = {
    200: ResponseSpec(PromptResponse, description="The job's outputs (or its events, with Accept: text/event-stream)"),
    202: ResponseSpec(
        AcceptedResponse, description="Accepted: webhook_v2, webhook or async jobs run in the background"
    ),
    **ERROR_RESPONSES,
}
"""What `run_prompt` may answer; also documents the workflow endpoints, which answer through it."""


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
    job = with_delivery_fields(to_job_request(body, services.settings.jobs, services.storage), body)
    if is_async(job) or wants_event_stream(request.headers.get("accept")):
        return _in_background(job, services)
    result = await services.runner.run(job, _ignore)
    failure = delivery_failure(job, result)
    status_code = failure.status_code if failure is not None else 200
    pieces = result_body(result, failure=failure)
    if inline_payload_bytes(result) <= SINGLE_PIECE_MAX_BYTES:
        content = b"".join([piece async for piece in pieces])
        return Response(content, media_type="application/json", status_code=status_code)
    return Stream(pieces, media_type="application/json", status_code=status_code)


def _in_background(job: JobRequest, services: Services) -> Response[Any]:
    """202 for a webhook/async job, else (Accept: text/event-stream) the job's event stream."""
    if services.async_jobs is None:
        raise ComfyUnavailable("background jobs are not available: the server is not running")
    if is_async(job):
        return Response(services.async_jobs.accept(job), status_code=202)
    heartbeat_s = services.settings.server.sse_heartbeat_s
    return progress_response(services.async_jobs, services.registry, job, heartbeat_s=heartbeat_s)
