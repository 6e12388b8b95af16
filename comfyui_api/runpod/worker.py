"""`comfyui-api runpod`: the RunPod serverless worker. Builds the same runtime as `serve` (on a thread of its own,
see `runtime_thread.py`), then hands `RunpodHandler` to `runpod.serverless.start`. The SDK's own flags pass through:
`--test_input '<json>'` runs one job and exits, `--rp_serve_api --rp_api_port 8000` serves its local test API.

The handler is thin: RunPod's input (`dialects/runpod.py`) -> one JobRequest -> the job service -> the worker's
output shape. Progress goes to `runpod.serverless.progress_update`, at most once a second.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from comfyui_api.dialects.runpod import RunpodInputError, error_body, job_request, parse_input, result_body
from comfyui_api.errors import ComfyApiError, ComfyUnavailable, PayloadTooLarge
from comfyui_api.jobs.model import JobRequest, JobStatus
from comfyui_api.jobs.service import JobService
from comfyui_api.runpod.runtime_thread import RuntimeThread
from comfyui_api.runtime import Runtime
from comfyui_api.settings import Settings

log = logging.getLogger(__name__)

ProgressSink = Callable[[Mapping[str, Any], Any], None]
"""`runpod.serverless.progress_update(job, progress)`."""

_PROGRESS_INTERVAL_S = 1.0  # RunPod shows the latest update; more often than this is only traffic
_READY_POLL_S = 0.1


def local_answer(path: Path) -> dict[str, Any]:
    """LOCAL_MODE: the configured image, as a finished job would return it, without ComfyUI."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return {"error": f"LOCAL_IMAGE_PATH {path} cannot be read: {exc.strerror or exc}", "details": []}
    encoded = base64.b64encode(data).decode("ascii")
    return {"images": [{"filename": path.name, "type": "base64", "data": encoded}]}


class RunpodHandler:
    """The SDK's handler: `await handler(job) -> output dict` (an `error` key marks the job failed)."""

    def __init__(self, runtime: RuntimeThread, settings: Settings, *, progress: ProgressSink | None = None):
        self._runtime = runtime
        self._settings = settings
        self._progress = progress

    async def __call__(self, job: Mapping[str, Any]) -> dict[str, Any]:
        job_id = str(job.get("id") or "local_test")
        try:
            spec = parse_input(job.get("input"))
        except RunpodInputError as exc:
            return exc.body()
        settings = self._settings.runpod
        if spec.local if spec.local is not None else settings.local_mode:
            return local_answer(Path(spec.local_image_path) if spec.local_image_path else settings.local_image_path)
        try:
            request = job_request(job_id, spec, self._settings)
            body = await self._runtime.call(self._run(request, job))
        except ComfyApiError as exc:
            body = error_body(exc)
        if settings.refresh_worker:
            body["refresh_worker"] = True
        return body

    async def _run(self, request: JobRequest, job: Mapping[str, Any]) -> dict[str, Any]:
        """On the runtime's loop: wait for ComfyUI, run the job, render its answer while its files are held."""
        runtime = self._runtime.runtime
        await wait_ready(runtime, self._settings)
        service = runtime.jobs
        record = await service.submit(request)
        record.acquire()
        follower = asyncio.create_task(self._follow_progress(service, request.id, job))
        try:
            await record.wait()
        except asyncio.CancelledError:  # RunPod cancelled the job (or the worker is stopping)
            record.unhold()
            await service.cancel(request.id, "cancelled: RunPod cancelled the job")
            raise
        finally:
            follower.cancel()
        try:
            if record.result is None:
                raise record.error or ComfyApiError(f"job {request.id} ended without an outcome")
            body = result_body(record.result, uploaded_type="s3_url")
        finally:
            record.unhold()
        check_size(body, self._settings.runpod.max_result_bytes)
        return body

    async def _follow_progress(self, service: JobService, job_id: str, job: Mapping[str, Any]) -> None:
        if self._progress is None:
            return
        # The first update after a second too: RunPod shows only the latest, and an update about a job shorter
        # than that arrives after its result (each costs the SDK a thread and an HTTP call). So a job that ends
        # within the second is never followed at all.
        await asyncio.sleep(_PROGRESS_INTERVAL_S)
        sent_at = 0.0
        last: tuple[float, str | None] | None = None
        record = service.get(job_id)
        async for item in service.subscribe(job_id, record.events.last_seq):
            if item is None or record.status != JobStatus.RUNNING:
                continue
            now = time.monotonic()
            current = (round(record.percent, 1), record.node)
            if current == last or now - sent_at < _PROGRESS_INTERVAL_S:
                continue
            sent_at, last = now, current
            update = {"percent": current[0], "node": current[1], "status": "running"}
            await asyncio.to_thread(self._progress, job, update)


def check_size(body: Mapping[str, Any], max_bytes: int) -> None:
    """RunPod refuses results over its limit: fail the job naming the largest output instead."""
    inline = [(len(item.get("data", "")), item.get("filename", "?")) for item in body.get("images", [])]
    if sum(size for size, _ in inline) <= max_bytes:
        return
    size, name = max(inline)
    raise PayloadTooLarge(
        f"the result is larger than RunPod accepts ({max_bytes // 2**20} MB); largest output: {name} "
        f"({size} bytes of base64). Configure a bucket (BUCKET_ENDPOINT_URL) to receive outputs as URLs.",
        field=f"images.{name}",
    )


async def wait_ready(runtime: Runtime, settings: Settings) -> None:
    """Until ComfyUI is up and the start-up steps are done; ComfyUnavailable after the start-up timeout."""
    comfy = settings.comfy
    deadline = time.monotonic() + comfy.startup_check_interval_s * comfy.startup_check_max_tries
    deadline += settings.warmup.timeout_s if (settings.warmup.prompt_file or settings.warmup.prompt_url) else 0.0
    while (phase := runtime.readiness_phase()) != "ready":
        if time.monotonic() > deadline or runtime.draining:
            raise ComfyUnavailable(f"ComfyUI is not ready ({phase})")
        await asyncio.sleep(_READY_POLL_S)


def worker_settings(settings: Settings) -> Settings:
    """The worker's bucket is its S3 default endpoint (and so trusted as the operator's)."""
    bucket = settings.runpod.bucket
    if bucket is None or settings.storage.aws_endpoint_url:
        return settings
    import dataclasses

    storage = dataclasses.replace(settings.storage, aws_endpoint_url=bucket.endpoint_url)
    return dataclasses.replace(settings, storage=storage)


def main(settings: Settings, sdk_argv: Sequence[str]) -> int:
    """Run the worker until the SDK returns (or exits, as it does after `--test_input`)."""
    try:
        import runpod
    except ImportError as exc:
        print(f"comfyui-api runpod needs the runpod SDK ({exc}): pip install 'comfyui-api[runpod]'", file=sys.stderr)
        return 2
    sys.argv = ["comfyui-api runpod", *sdk_argv]  # the SDK reads its flags from sys.argv
    if "-h" in sdk_argv or "--help" in sdk_argv:  # the SDK prints its flags and exits: nothing to start for that
        runpod.serverless.start({"handler": _never_called})
        return 0
    settings = worker_settings(settings)
    thread = RuntimeThread(settings)
    thread.start()
    try:
        handler = RunpodHandler(thread, settings, progress=runpod.serverless.progress_update)
        runpod.serverless.start({"handler": handler})
    finally:  # also when the SDK exits (it does after --test_input): ComfyUI is stopped before the interpreter goes
        thread.stop(settings.server.shutdown_grace_s)
    return thread.fatal_exit_code or 0


def _never_called(job: Mapping[str, Any]) -> None:
    raise AssertionError("no job is taken when only the help was asked for")
