"""POST /prompt: the synchronous job endpoint. Converts the wire request into a `JobRequest`, runs it, and streams
the result. Thin: validation of the graph, staging and execution all happen in the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody
from litestar.response import Stream

from comfyui_api.api.result_stream import result_body
from comfyui_api.api.schemas import ERROR_RESPONSES, PromptRequest, PromptResponse
from comfyui_api.api.services import ServicesDependency
from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.model import JobEvent, JobRequest
from comfyui_api.settings import JobSettings


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


def to_job_request(body: PromptRequest, settings: JobSettings) -> JobRequest:
    check_graph(body.prompt)
    return JobRequest(id=body.id, graph=body.prompt, timeout_s=job_timeout_s(body.timeout_s, settings))


def _ignore(_: JobEvent) -> None:
    """A synchronous caller only wants the result; progress goes to other subscribers."""


class PromptController(Controller):
    path = "/prompt"
    tags = ["prompts"]

    @post(
        status_code=200,
        summary="Run a ComfyUI workflow and wait for its outputs",
        response_description="The job's outputs, base64-encoded, with names, kinds and timings",
        responses={
            200: ResponseSpec(PromptResponse, description="The job's outputs"),
            **ERROR_RESPONSES,
        },
    )
    async def create(self, data: JSONBody[PromptRequest], services: ServicesDependency) -> Stream:
        request = to_job_request(data, services.settings.jobs)
        result = await services.runner.run(request, _ignore)
        return Stream(result_body(result), media_type="application/json")
