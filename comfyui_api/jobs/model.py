"""The domain types of one job: what was asked (JobRequest), what came out (OutputFile, JobResult, Stats) and what
happened on the way (JobEvent and its past-tense subclasses).

Pure data: no I/O, no HTTP, no ComfyUI protocol types. Wire shapes live in `dialects/` and the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from comfyui_api.errors import ComfyApiError
from comfyui_api.storage.base import Credential, UploadTarget


class JobStatus(StrEnum):
    QUEUED = "queued"
    STAGING = "staging"
    RUNNING = "running"
    UPLOADING = "uploading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True)
class ConvertSpec:
    """Convert image outputs: format is "jpeg", "webp" or "png"; options are that format's own Pillow options."""

    format: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NamedInput:
    """A file sent beside the graph under a name the graph uses (RunPod's `images`, `videos`, `files`): `data` is
    base64, a data URI or an http(s) URL; `field` names it in errors. Staged into the job's input folder, and every
    graph input equal to `name` is pointed at it. `media_only`: refuse what is not an image, video or audio."""

    name: str
    data: str = field(repr=False)
    field: str
    media_only: bool = True


@dataclass(frozen=True)
class JobRequest:
    """One job as every adapter (HTTP, RunPod, AMQP, warmup, workflow endpoints) hands it to the runner.

    `graph` is ComfyUI's API-format graph (ComfyUI calls it "prompt"); `id` is our job id (ComfyUI's prompt_id is
    another value, mapped in `jobs/registry.py`).
    """

    id: str
    graph: Mapping[str, Any]
    timeout_s: float
    webhook_v2_url: str | None = None
    webhook_v1_url: str | None = None
    webhook_runpod_url: str | None = None  # RunPod's /v2 `webhook`: its /status body, POSTed once the job ends
    run_async: bool = False
    upload: UploadTarget | None = None
    convert: ConvertSpec | None = None
    credentials: tuple[Credential, ...] = ()
    fallback_to_base64: bool = False
    cancel_on_disconnect: bool = False
    keep_outputs: bool | None = None  # None: the server default (KEEP_OUTPUTS)
    discard_outputs: bool = False  # warmup: run, then throw the outputs away
    metadata: Mapping[str, Any] | None = None  # the caller's, kept on the record and echoed in webhooks and events
    named_inputs: tuple[NamedInput, ...] = ()
    extra_data: Mapping[str, Any] | None = field(default=None, repr=False)  # ComfyUI's prompt extra_data (secrets)
    source: str = "http"  # the front door it came through: http, runpod, runpod_api, amqp, comfyui, api_v1, warmup


@dataclass
class OutputFile:
    """One output of a job. `path` is a local file holding the bytes (removed once delivered unless kept);
    `url` is set once uploaded; `error` is set when the upload of this output failed."""

    node_id: str
    kind: str  # "image" | "animated" | "video" | "audio" | "latent" | "file"
    filename: str
    subfolder: str
    comfy_type: str  # ComfyUI's folder type: "output" or "temp"
    content_type: str
    size_bytes: int
    path: Path | None = None
    url: str | None = None
    error: str | None = None
    note: str | None = None


@dataclass
class Stats:
    """Timings in milliseconds (epoch ms for start/end), the same in every result shape."""

    queue_wait_ms: float = 0.0
    preprocess_ms: float = 0.0
    comfy_round_trip_ms: float = 0.0
    execution_start_ms: float | None = None
    execution_end_ms: float | None = None
    execution_ms: float | None = None
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)  # node id -> {"start", "duration"}
    postprocess_ms: float = 0.0
    upload_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class JobResult:
    id: str
    graph: Mapping[str, Any]
    outputs: list[OutputFile]
    texts: list[str]
    stats: Stats


# ---- events: what happened to a job, in order. Subscribers (SSE, webhooks, system events) receive these. ----


@dataclass(frozen=True)
class JobEvent:
    job_id: str


@dataclass(frozen=True)
class JobAccepted(JobEvent):
    """ComfyUI took the prompt (it passed ComfyUI's validation and is queued); nothing of it has run yet."""


@dataclass(frozen=True)
class JobQueued(JobEvent):
    position: int  # 0 = next to run


@dataclass(frozen=True)
class JobStarted(JobEvent):
    pass


@dataclass(frozen=True)
class NodeExecuting(JobEvent):
    node_id: str
    class_type: str | None


@dataclass(frozen=True)
class NodesCached(JobEvent):
    """ComfyUI reused these nodes' results from an earlier run: they will not execute."""

    node_ids: tuple[str, ...]


@dataclass(frozen=True)
class NodeStates(JobEvent):
    """ComfyUI's per-node state (0.33+ `progress_state`): `{node_id: {value, max, state, ...}}` as it sent it."""

    nodes: Mapping[str, Any]


@dataclass(frozen=True)
class ProgressUpdated(JobEvent):
    node_id: str | None
    value: float
    max: float
    percent: float  # overall 0..100, never decreasing
    reported: bool = True  # False for the job's own marks (a node started: 0 of 1; the run finished: 1 of 1)


@dataclass(frozen=True)
class PreviewProduced(JobEvent):
    node_id: str | None
    content_type: str  # image/jpeg or image/png
    data: bytes


@dataclass(frozen=True)
class OutputReady(JobEvent):
    output: OutputFile


@dataclass(frozen=True)
class JobCompleted(JobEvent):
    result: JobResult


@dataclass(frozen=True)
class JobFailed(JobEvent):
    error: ComfyApiError


EventSink = Callable[[JobEvent], None]
"""Receives a job's events in order. Must not block: implementations put the event on a queue."""
