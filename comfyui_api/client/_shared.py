"""What the sync and async clients share: configuration, request bodies, answer parsing. No I/O."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from comfyui_api.client.errors import ApiError, JobFailed
from comfyui_api.client.model import Output
from comfyui_api.client.workflow import InputValue, apply_inputs, apply_sets

DEFAULT_URL = "http://127.0.0.1:3000"
DEFAULT_JOB_TIMEOUT_S = 600.0  # the server's default PROMPT_TIMEOUT_S
ANSWER_MARGIN_S = 60.0  # a sync answer may come this long after the job's own timeout (uploads, the answer itself)
EVENTS_READ_TIMEOUT_S = 60.0  # the server sends a heartbeat every SSE_HEARTBEAT_S (15 s by default)
RECONNECT_ATTEMPTS = 5
FAILED_JOB_STATUSES = (409, 500, 502, 504)


class Config:
    """Base URL, API key and timeouts: from the arguments, else COMFYUI_API_URL / COMFYUI_API_KEY."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        timeout_s: float,
        connect_timeout_s: float,
        environ: Mapping[str, str] | None,
    ):
        env = os.environ if environ is None else environ
        self.base_url = (base_url or env.get("COMFYUI_API_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else env.get("COMFYUI_API_KEY")
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.timeout = httpx.Timeout(timeout_s, connect=connect_timeout_s)
        self.connect_timeout_s = connect_timeout_s

    def job_timeout(self, timeout_s: float | None) -> httpx.Timeout:
        return httpx.Timeout((timeout_s or DEFAULT_JOB_TIMEOUT_S) + ANSWER_MARGIN_S, connect=self.connect_timeout_s)

    def events_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(EVENTS_READ_TIMEOUT_S, connect=self.connect_timeout_s)

    def same_origin(self, url: str) -> bool:
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        return (mine.scheme, mine.netloc) == (theirs.scheme, theirs.netloc)


def prompt_body(
    workflow: Mapping[str, Any],
    inputs: Mapping[str, InputValue] | None,
    sets: Mapping[str, Any] | None,
    timeout_s: float | None,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    graph = copy.deepcopy(dict(workflow))
    if sets:
        apply_sets(graph, sets)
    if inputs:
        apply_inputs(graph, inputs)
    body: dict[str, Any] = {"prompt": graph, **options}
    if timeout_s is not None:
        body["timeout_s"] = timeout_s
    return body


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/jobs/{quote(job_id, safe='')}{suffix}"


def answer(response: httpx.Response, *, job_id: str | None = None) -> Any:
    """The JSON of a 2xx answer; an error answer raises ApiError (JobFailed for a job that failed)."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code < 400:
        return body
    error = ApiError.from_body(response.status_code, body)
    if response.status_code in FAILED_JOB_STATUSES and job_id is not None:
        raise JobFailed(
            job_id, error.status, error.type, error.message, field=error.field, details=error.details, body=body
        )
    raise error


def failed_event_error(job_id: str, data: Any) -> JobFailed:
    """The JobFailed of a `failed` event (`{id, error: {type, message, field?}}`)."""
    error = data.get("error") if isinstance(data, Mapping) else None
    error = error if isinstance(error, Mapping) else {}
    status = 409 if error.get("type") == "cancelled" else 500
    return JobFailed(
        job_id,
        status,
        str(error.get("type") or "failed"),
        str(error.get("message") or "the job failed"),
        field=error.get("field") if isinstance(error.get("field"), str) else None,
        details=error.get("details") if isinstance(error.get("details"), Mapping) else None,
        body=data,
    )


def target_path(directory: Path, output: Output, taken: set[str]) -> Path:
    """Where an output is written: its own file name (no folders), made unique within one download."""
    name = Path(output.filename.replace("\\", "/")).name or "output"
    stem, dot, suffix = name.partition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}-{n}{dot}{suffix}"
    taken.add(candidate)
    return directory / candidate
