"""RunPod's job dialect, as runpod-workers/worker-comfyui 5.x speaks it: a job's `input`, the worker's output and
error shapes, and RunPod's job states. Wire shapes only: no framework, no I/O beyond reading finished output files.

    input   {"workflow": {...API-format graph...}, "images": [{"name", "image"}], "videos": [{"name", "video"}],
             "files": {"name": "<base64>"}, "return_base64": bool, "path": "prefix", "comfy_org_api_key": "...",
             "local": bool, "local_image_path": "/girs.png"}
    output  {"images": [{"filename", "type": "base64" | "url" | "s3_url", "data"}], "errors"?: [...],
             "outputs": [...], "stats": {...}}     or   {"status": "success_no_images", "images": []}
    error   {"error": "...", "details": ["<field>: <why>", ...]}
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.dialects.salad_body import output_info, stats_body
from comfyui_api.errors import ComfyApiError, InvalidRequest, JobCancelled, JobTimeout, WorkflowRejected
from comfyui_api.jobs.model import JobRequest, JobResult, JobStatus, NamedInput, OutputFile
from comfyui_api.jobs.staging import is_safe_job_id
from comfyui_api.jobs.store import JobRecord
from comfyui_api.settings import RunpodSettings, Settings
from comfyui_api.storage.base import Credential, UploadTarget

_KEY_PREFIX = "rp"  # bucket keys: rp/<path or job id>/<filename>
_INPUT_FIELDS = (
    "workflow",
    "images",
    "videos",
    "files",
    "return_base64",
    "path",
    "comfy_org_api_key",
    "local",
    "local_image_path",
)

# RunPod's job states, from ours (a failure that is a timeout is RunPod's TIMED_OUT).
STATES: Mapping[JobStatus, str] = {
    JobStatus.QUEUED: "IN_QUEUE",
    JobStatus.STAGING: "IN_PROGRESS",
    JobStatus.RUNNING: "IN_PROGRESS",
    JobStatus.UPLOADING: "IN_PROGRESS",
    JobStatus.COMPLETED: "COMPLETED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "CANCELLED",
}


def runpod_state(status: JobStatus, error: ComfyApiError | None = None) -> str:
    if status is JobStatus.FAILED and isinstance(error, JobTimeout):
        return "TIMED_OUT"
    if status is JobStatus.FAILED and isinstance(error, JobCancelled):
        return "CANCELLED"
    return STATES[status]


class RunpodInputError(ValueError):
    """The job's input is not usable; `details` has one `<field>: <why>` line per problem."""

    def __init__(self, details: Sequence[str]):
        super().__init__("; ".join(details))
        self.details = list(details)

    def body(self) -> dict[str, Any]:
        return {"error": "invalid job input", "details": self.details}


@dataclass(frozen=True)
class RunpodInput:
    """A parsed job input."""

    workflow: dict[str, Any]
    named_inputs: tuple[NamedInput, ...] = ()
    return_base64: bool | None = None  # None: the worker's default (false when a bucket is configured)
    path: str | None = None
    comfy_org_api_key: str | None = field(default=None, repr=False)
    local: bool | None = None  # None: LOCAL_MODE
    local_image_path: str | None = None


def parse_input(raw: Any) -> RunpodInput:
    """`job["input"]` (an object, or the same as a JSON string) -> RunpodInput; RunpodInputError listing every bad
    field otherwise."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise RunpodInputError(["input: a string input must hold a JSON object"]) from None
    if not isinstance(raw, Mapping):
        raise RunpodInputError(["input: must be an object with a workflow"])
    problems = [f"{key}: unknown field; known: {', '.join(_INPUT_FIELDS)}" for key in raw if key not in _INPUT_FIELDS]
    local = _optional_bool(raw, "local", problems)
    workflow = _workflow(raw.get("workflow"), problems, required=not local)
    named = [
        *_media_list(raw.get("images"), "images", "image", problems),
        *_media_list(raw.get("videos"), "videos", "video", problems),
        *_files(raw.get("files"), problems),
    ]
    names = [item.name for item in named]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"images/videos/files: the name {name!r} is given more than once")
    return_base64 = _optional_bool(raw, "return_base64", problems)
    path = _optional_text(raw, "path", problems)
    if path is not None and (path.startswith("/") or ".." in path.split("/") or "\\" in path):
        problems.append("path: must be a relative key prefix without '..'")
    api_key = _optional_text(raw, "comfy_org_api_key", problems)
    local_path = _optional_text(raw, "local_image_path", problems)
    if problems:
        raise RunpodInputError(problems)
    return RunpodInput(
        workflow=workflow,
        named_inputs=tuple(named),
        return_base64=return_base64,
        path=path.strip("/") if path else None,
        comfy_org_api_key=api_key,
        local=local,
        local_image_path=local_path,
    )


def _workflow(value: Any, problems: list[str], *, required: bool) -> dict[str, Any]:
    if value is None:
        if required:
            problems.append("workflow: required (an API-format graph)")
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            problems.append("workflow: a string workflow must hold a JSON object")
            return {}
    if not isinstance(value, Mapping) or not value:
        problems.append("workflow: must be a non-empty object (an API-format graph)")
        return {}
    if is_ui_format(value):
        problems.append(
            "workflow: this is the editor's UI format; in ComfyUI use Workflow > Export (API) and send that file"
        )
        return {}
    for node_id, node in value.items():
        if not isinstance(node, Mapping) or not isinstance(node.get("class_type"), str):
            problems.append(f"workflow.{node_id}: each node must be an object with a class_type")
            break
    return dict(value)


def _media_list(value: Any, name: str, data_key: str, problems: list[str]) -> list[NamedInput]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{name}: must be a list of {{name, {data_key}}}")
        return []
    found = []
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be an object with name and {data_key}")
            continue
        item_name, data = item.get("name"), item.get(data_key)
        if not isinstance(item_name, str) or not item_name.strip():
            problems.append(f"{where}.name: required, a file name")
        elif not isinstance(data, str) or not data:
            problems.append(f"{where}.{data_key}: required, base64, a data URI or an http(s) URL")
        else:
            found.append(NamedInput(item_name, data, f"{where}.{data_key}", media_only=True))
    return found


def _files(value: Any, problems: list[str]) -> list[NamedInput]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        problems.append("files: must be an object of name -> base64")
        return []
    found = []
    for name, data in value.items():
        if not isinstance(data, str) or not data:
            problems.append(f"files.{name}: must be base64 (or a data URI)")
        else:
            found.append(NamedInput(str(name), data, f"files.{name}", media_only=False))
    return found


def _optional_bool(raw: Mapping[str, Any], name: str, problems: list[str]) -> bool | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, bool):
        problems.append(f"{name}: must be true or false")
        return None
    return value


def _optional_text(raw: Mapping[str, Any], name: str, problems: list[str]) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        problems.append(f"{name}: must be a string")
        return None
    return value or None


# ---- the job it asks for ----


def bucket_upload(settings: RunpodSettings, job_id: str, path: str | None) -> tuple[UploadTarget, Credential] | None:
    """Where a job's outputs go when a bucket is configured: keys `rp/<path>/<filename>` (`rp/<job id>/...` without
    a path), the bucket's own keys as the job's S3 credentials."""
    bucket = settings.bucket
    if bucket is None:
        return None
    prefix = f"{_KEY_PREFIX}/{path or job_id}/"
    target = UploadTarget(provider="s3", options={"bucket": bucket.bucket, "prefix": prefix})
    credential = Credential(
        url_pattern=f"s3://{bucket.bucket}/**",
        auth={
            "type": "s3",
            "access_key_id": bucket.access_key_id,
            "secret_access_key": bucket.secret_access_key,
            "endpoint_url": bucket.endpoint_url,
        },
    )
    return target, credential


def job_request(
    job_id: str, spec: RunpodInput, settings: Settings, *, timeout_s: float | None = None, source: str = "runpod"
) -> JobRequest:
    """The job a RunPod input asks for (`timeout_s`: a request's `policy.executionTimeout`, else PROMPT_TIMEOUT_S)."""
    if not is_safe_job_id(job_id):
        raise InvalidRequest("the job id must be 1-128 letters, digits, '_', '-' or '.'", field="id")
    return_base64 = spec.return_base64
    upload = bucket_upload(settings.runpod, job_id, spec.path)
    if return_base64 is None:
        return_base64 = upload is None
    api_key = spec.comfy_org_api_key or settings.runpod.comfy_org_api_key
    target, credential = upload if upload is not None and not return_base64 else (None, None)
    return JobRequest(
        id=job_id,
        graph=spec.workflow,
        timeout_s=min(timeout_s or settings.jobs.default_timeout_s, settings.jobs.max_timeout_s),
        upload=target,
        credentials=(credential,) if credential is not None else (),
        fallback_to_base64=True,
        named_inputs=spec.named_inputs,
        extra_data={"api_key_comfy_org": api_key} if api_key else None,
        source=source,
    )


# ---- what comes back ----


def output_entry(output: OutputFile, *, uploaded_type: str = "s3_url") -> dict[str, Any]:
    """One entry of `images`: the uploaded URL (`uploaded_type`: `s3_url` for a bucket), else the bytes as base64."""
    if output.url is not None:
        return {"filename": output.filename, "type": uploaded_type, "data": output.url}
    assert output.path is not None, "an output without a URL keeps its file until it is rendered"
    data = base64.b64encode(output.path.read_bytes()).decode("ascii")
    return {"filename": output.filename, "type": "base64", "data": data}


def result_body(result: JobResult, *, uploaded_type: str = "s3_url") -> dict[str, Any]:
    """The worker's answer for a completed job. Every output kind (video, audio, files) is listed under `images`,
    as worker-comfyui does; `outputs` and `stats` are ours, as `/jobs` has them."""
    images = [
        output_entry(output, uploaded_type=uploaded_type)
        for output in result.outputs
        if output.url is not None or output.path is not None
    ]
    body: dict[str, Any] = {"images": images} if images else {"status": "success_no_images", "images": []}
    errors = [f"{output.filename}: {output.error}" for output in result.outputs if output.error]
    if errors:
        body["errors"] = errors
    if result.texts:
        body["texts"] = list(result.texts)
    body["outputs"] = [msgspec.to_builtins(output_info(output)) for output in result.outputs]
    body["stats"] = msgspec.to_builtins(stats_body(result.stats))
    return body


def error_body(error: ComfyApiError) -> dict[str, Any]:
    """A failed job: ComfyUI's node errors flattened into readable lines."""
    details: list[str] = []
    if isinstance(error, WorkflowRejected):
        for node_id, node in sorted(error.node_errors.items()):
            class_type = node.get("class_type", "?") if isinstance(node, Mapping) else "?"
            for problem in node.get("errors", []) if isinstance(node, Mapping) else []:
                message = problem.get("message", "") if isinstance(problem, Mapping) else str(problem)
                extra = problem.get("details", "") if isinstance(problem, Mapping) else ""
                details.append(f"Node {node_id} ({class_type}): {message}{': ' + extra if extra else ''}")
    elif error.field:
        details.append(f"{error.field}: {error.message}")
    else:
        for key in ("node_id", "node_type", "exception_message"):
            if key in error.details:
                details.append(f"{key}: {error.details[key]}")
    return {"error": error.message, "details": details or [error.message]}


def status_body(record: JobRecord, *, uploaded_type: str = "s3_url") -> dict[str, Any]:
    """RunPod's `/status/{id}` answer for a record: state, `delayTime` and `executionTime` in ms, and the output
    (or the error) once it ended. Reads output files: hold the record while this runs."""
    error = record.error
    body: dict[str, Any] = {"id": record.id, "status": runpod_state(JobStatus(record.status), error)}
    if record.started_at is not None:
        body["delayTime"] = round((record.started_at - record.created_at) * 1000)
        if record.finished_at is not None:
            body["executionTime"] = round((record.finished_at - record.started_at) * 1000)
    elif record.finished_at is not None:
        body["delayTime"] = round((record.finished_at - record.created_at) * 1000)
    if record.result is not None:
        body["output"] = result_body(record.result, uploaded_type=uploaded_type)
    elif error is not None:
        failed = error_body(error)
        body["error"] = failed["error"]
        body["output"] = {"details": failed["details"]}
    return body
