"""Wire types of our own HTTP routes (health, readiness, interrupt) and the error responses every route documents.
The Salad-compatible shapes of POST /prompt live in `dialects/salad.py`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

from comfyui_api.dialects.salad import ErrorResponse, JobId, StatsBody


class InterruptRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /interrupt: the job to stop."""

    id: JobId


class InterruptResponse(msgspec.Struct, kw_only=True):
    id: str
    status: str  # "removed" (it was still pending) or "interrupted" (it was running)


class HealthResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str  # "healthy" | "starting"
    comfyui: str  # ComfyUI's phase, or "simulator" when the bundled simulator stands in for ComfyUI
    comfyui_phase: str  # ComfyUI's phase ("ready", "starting", "restarting", ...), also under the simulator
    comfyui_version: str | None = None  # what the running ComfyUI reports in /system_stats, once it has started
    version: str  # this server's version


class ReadyResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    status: str  # "ready" | "not_ready"
    # "ready" | "starting" | "restarting" | "failed" | "stopped" | "draining" | "queue_full" | "provisioning"
    # | "models_pending" | "loading_workflows" | "warmup" | "warmup_failed"
    phase: str
    queue_depth: int
    max_queue_depth: int
    version: str  # this server's
    models: dict[str, Any] | None = None  # manifest after_start models: {pending, done, failed}, when it has any
    warmup: dict[str, Any] | None = None  # {phase, error, duration_s, run_count}, when a warmup is configured


class JobView(msgspec.Struct, kw_only=True):
    """GET /jobs/{id}. Times are epoch seconds; `outputs[i].url` is the storage URL of an uploaded output, else
    /jobs/<id>/outputs/<i> while the record keeps the file (null once it no longer does)."""

    id: str
    status: str  # queued | running | completed | failed | cancelled
    created_at: float
    started_at: float | None
    finished_at: float | None
    queue_position: int | None  # 0 = running or next
    progress: dict[str, Any]  # {percent: 0-100, never decreasing; node: the node running now}
    outputs: list[dict[str, Any]]  # {node_id, kind, filename, content_type, size_bytes, url, error?}
    texts: list[str]
    error: dict[str, Any] | None  # {type, message, field?, details?}
    stats: StatsBody | None
    metadata: dict[str, Any] | None
    webhook: dict[str, Any] | None  # {url, state: pending | delivered | failed, attempts, last_error}


class JobListResponse(msgspec.Struct, kw_only=True):
    jobs: list[JobView]
    next_cursor: str | None  # pass as ?cursor= for the next page; null on the last one


class CancelResponse(msgspec.Struct, kw_only=True):
    id: str
    cancelled: bool  # true: it was removed from the queue or interrupted; false: it had ended, or is unknown


class RedeliverResponse(msgspec.Struct, kw_only=True):
    id: str
    webhook: str
    state: str


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
