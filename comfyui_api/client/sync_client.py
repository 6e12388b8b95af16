"""`Client`: comfyui-api from a script, blocking. Same methods as `AsyncClient`."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from comfyui_api.client._shared import (
    RECONNECT_ATTEMPTS,
    Config,
    answer,
    failed_event_error,
    job_path,
    prompt_body,
    target_path,
)
from comfyui_api.client.errors import ClientError, ServerUnreachable
from comfyui_api.client.model import Event, Job, JobPage, Output, Result
from comfyui_api.client.sse import EventParser
from comfyui_api.client.workflow import InputValue


class Client:
    """A comfyui-api server. `base_url` defaults to COMFYUI_API_URL (else http://127.0.0.1:3000), `api_key` to
    COMFYUI_API_KEY; `timeout_s` bounds each call but `run` and `events`, which wait as long as the job may take.

        with Client("http://gpu-1:3000") as client:
            result = client.run(graph, set={"3.inputs.seed": 7})
            open(result.outputs[0].filename, "wb").write(result.outputs[0].data)
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self._config = Config(base_url, api_key, timeout_s, connect_timeout_s, environ)
        self.base_url = self._config.base_url
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._config.headers, timeout=self._config.timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc

    def run(
        self,
        workflow: Mapping[str, Any],
        *,
        inputs: Mapping[str, InputValue] | None = None,
        set: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Result:
        """Run a workflow and wait for its outputs (`POST /prompt`). `inputs`: `{"NODE.NAME": path, URL or bytes}`;
        `set`: `{"NODE.inputs.NAME": value}`; `timeout`: the job's `timeout_s`; `options`: any other request field
        (`id`, `metadata`, `s3`, `webhook_v2`, ...). Raises JobFailed when the job fails, ApiError when refused."""
        body = prompt_body(workflow, inputs, set, timeout, options)
        response = self._request("POST", "/prompt", json=body, timeout=self._config.job_timeout(timeout))
        return Result.from_body(answer(response, job_id=options.get("id")))

    def submit(
        self,
        workflow: Mapping[str, Any],
        *,
        inputs: Mapping[str, InputValue] | None = None,
        set: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        **options: Any,
    ) -> Job:
        """Queue a workflow (`"async": true`) and return its record at once; then `events`, `wait` or `get`."""
        body = prompt_body(workflow, inputs, set, timeout, {**options, "async": True})
        accepted = answer(self._request("POST", "/prompt", json=body))
        return self.get(str(accepted["id"]))

    def get(self, job_id: str) -> Job:
        """The job's record (`GET /jobs/{id}`); ApiError 404 for an unknown id."""
        return Job.from_record(answer(self._request("GET", job_path(job_id))))

    def list(self, *, status: str | None = None, limit: int | None = None, cursor: str | None = None) -> JobPage:
        """One page of jobs, newest first; pass `next_cursor` back as `cursor` for the next."""
        params = {key: value for key, value in (("status", status), ("limit", limit), ("cursor", cursor)) if value}
        page = answer(self._request("GET", "/jobs", params=params))
        return JobPage(tuple(Job.from_record(item) for item in page["jobs"]), page.get("next_cursor"))

    def events(self, job_id: str, *, last_event_id: str | None = None) -> Iterator[Event]:
        """The job's events (`GET /jobs/{id}/events`) to its end: what happened so far, then live, ending with one
        `complete` or `failed`. A dropped connection is resumed with `Last-Event-ID`: no event lost or repeated."""
        failures = 0
        parser = EventParser()
        parser.last_id = last_event_id
        while True:
            headers = {"Last-Event-ID": parser.last_id} if parser.last_id else {}
            try:
                with self._http.stream(
                    "GET", job_path(job_id, "/events"), headers=headers, timeout=self._config.events_timeout()
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        answer(response)
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            continue
                        failures = 0
                        yield event
                        if event.terminal:
                            return
            except httpx.TransportError as exc:
                failures += 1
                if failures > RECONNECT_ATTEMPTS:
                    raise ServerUnreachable(f"the events of job {job_id} broke off: {exc!r}") from exc
            time.sleep(min(5.0, 0.2 * 2**failures))  # the stream ended or broke before the job did: resume

    def wait(self, job_id: str, *, timeout: float | None = None, raise_on_failure: bool = False) -> Job:
        """Follow the job to its end and return its record (`raise_on_failure`: JobFailed when it did not
        complete). `timeout` (seconds) raises TimeoutError, leaving the job running."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for event in self.events(job_id):
            if event.name == "failed" and raise_on_failure:
                raise failed_event_error(job_id, event.data)
            if event.terminal:
                break
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} did not end within {timeout}s")
        return self.get(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it had already ended (or is unknown)."""
        return bool(answer(self._request("POST", job_path(job_id, "/cancel")))["cancelled"])

    def download(self, job: Job | Result | str, directory: str | Path) -> builtins.list[Path]:
        """Write the job's outputs into `directory` under their own names; returns the paths written."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        if isinstance(job, str):
            job = self.get(job)
        taken: set[str] = set()
        written = []
        for index, output in enumerate(job.outputs):
            path = target_path(target, output, taken)
            if output.data is not None:
                path.write_bytes(output.data)
            else:
                self._fetch(job.id, index, output, path)
            written.append(path)
        return written

    def _fetch(self, job_id: str, index: int, output: Output, path: Path) -> None:
        url = output.url or job_path(job_id, f"/outputs/{index}")
        if url.startswith("s3://"):
            raise ClientError(f"output {output.filename} is in S3 ({url}): fetch it with your S3 credentials")
        external = url.startswith(("http://", "https://")) and not self._config.same_origin(url)
        partial = path.with_name(path.name + ".part")
        try:
            opener = httpx.stream if external else self._http.stream  # our API key goes to our server only
            with opener("GET", url, timeout=self._config.timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    answer(response, job_id=job_id)
                with partial.open("wb") as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
            partial.replace(path)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"GET {url}: {exc!r}") from exc
        finally:
            partial.unlink(missing_ok=True)
