"""Wire types of the HTTP API (msgspec Structs). Requests reject unknown fields, so a typo is a 400 naming it.

Shapes follow SaladTechnologies' comfyui-api (`id`, `prompt`, `images`, `filenames`, `stats`) so clients can switch
servers; additions (`outputs`, `texts`, `timeout_s`) are backwards compatible. No domain logic here: conversion to
`JobRequest` lives with the controllers.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

JobId = Annotated[
    str,
    msgspec.Meta(
        pattern=JOB_ID_PATTERN,
        description="Job id (also ComfyUI's prompt_id): 1-128 letters, digits, '_', '-' or '.'.",
        examples=["3f1c2a9e-5a8b-4c1e-9f3a-2b7d6e8c9a01"],
    ),
]
TimeoutSeconds = Annotated[float, msgspec.Meta(gt=0, description="Fail the job (504) if it takes longer (seconds).")]


def new_job_id() -> str:
    return str(uuid.uuid4())


class PromptRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /prompt. `prompt` is a ComfyUI API-format graph: {node id: {class_type, inputs}}."""

    prompt: dict[str, Any]
    id: JobId = msgspec.field(default_factory=new_job_id)
    timeout_s: TimeoutSeconds | None = None


class InterruptRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /interrupt: the job to stop."""

    id: JobId


class InterruptResponse(msgspec.Struct, kw_only=True):
    id: str
    status: str  # "removed" (it was still pending) or "interrupted" (it was running)


class OutputInfo(msgspec.Struct, kw_only=True):
    node_id: str
    kind: str  # image | animated | video | audio | latent | file
    filename: str
    content_type: str
    size_bytes: int


class ExecutionStats(msgspec.Struct, kw_only=True):
    start: float | None  # epoch ms
    end: float | None
    duration: float | None
    nodes: dict[str, dict[str, float]]  # node id -> {start (epoch ms), duration (ms)}


class StatsBody(msgspec.Struct, kw_only=True):
    """Milliseconds."""

    queue_wait: float
    comfy_execution: ExecutionStats
    preprocess_time: float
    comfy_round_trip_time: float
    postprocess_time: float
    total_time: float


class PromptResponse(msgspec.Struct, kw_only=True):
    """200 of POST /prompt. `images[i]` is the base64 of `outputs[i]` (every output file, not only images)."""

    id: str
    prompt: dict[str, Any]
    images: list[str]
    filenames: list[str]
    outputs: list[OutputInfo]
    texts: list[str]
    stats: StatsBody


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx/5xx. `node_errors` (ComfyUI's, verbatim) only when ComfyUI rejected the workflow."""

    error: ErrorDetail
    node_errors: dict[str, Any] | None = None


class HealthResponse(msgspec.Struct, kw_only=True):
    status: str  # "healthy" | "starting"
    comfyui: str  # ComfyUI's phase


class ReadyResponse(msgspec.Struct, kw_only=True):
    status: str  # "ready" | "not_ready"
    phase: str  # "ready" | "starting" | "restarting" | "failed" | "stopped" | "draining" | "queue_full"
    queue_depth: int
    max_queue_depth: int


def _error_spec(description: str) -> ResponseSpec:
    return ResponseSpec(ErrorResponse, description=description)


ERROR_RESPONSES = {
    400: _error_spec("Invalid request, input that could not be staged, or a workflow ComfyUI rejected"),
    404: _error_spec("No such job"),
    409: _error_spec("The job was interrupted"),
    413: _error_spec("Request body larger than MAX_BODY_SIZE_MB"),
    500: _error_spec("A node raised while ComfyUI ran the workflow"),
    502: _error_spec("ComfyUI answered something unexpected"),
    503: _error_spec("Queue full, shutting down, or ComfyUI unavailable (see Retry-After)"),
    504: _error_spec("The job did not finish within timeout_s"),
}
