"""The HTTP app without ComfyUI for api/ tests: a scripted runner behind a real JobService, a ComfyUI instance that
only reports its state, and the app built around them."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from litestar.testing import AsyncTestClient

from comfyui_api.comfy.features import ComfyFeatures
from comfyui_api.errors import ComfyApiError, JobNotFound
from comfyui_api.jobs.model import EventSink, JobCompleted, JobFailed, JobRequest, JobResult, Stats
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.tracing import NO_TRACE, JobTrace

GRAPH = {"9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}


@dataclass
class FakeRunner:
    """The runner's surface the job service uses: `start` runs the job at once to its scripted outcome."""

    error: Exception | None = None
    requests: list[JobRequest] = field(default_factory=list)
    registry: JobRegistry = field(default_factory=lambda: JobRegistry(max_depth=3))

    def start(
        self, request: JobRequest, sink: EventSink, *, report_queue_position: bool = False, trace: JobTrace = NO_TRACE
    ) -> asyncio.Task:
        self.requests.append(request)
        self.registry.admit(request.id)
        task = asyncio.create_task(self._run(request, sink))
        task.add_done_callback(lambda _: self.registry.remove(request.id))
        return task

    async def _run(self, request: JobRequest, sink: EventSink) -> JobResult:
        if self.error is not None:
            error = self.error if isinstance(self.error, ComfyApiError) else ComfyApiError("internal error")
            sink(JobFailed(request.id, error))
            raise error
        result = JobResult(request.id, request.graph, [], ["done"], Stats())
        sink(JobCompleted(request.id, result))
        return result

    async def interrupt(self, job_id: str, reason: str = "interrupted on request") -> str:
        if job_id != "known":
            raise JobNotFound(f"no job with id {job_id!r}", field="id")
        return "removed"


@dataclass
class FakeInstance:
    is_ready: bool = True
    phase: str = "ready"
    start_count: int = 1
    features: ComfyFeatures = field(default_factory=lambda: ComfyFeatures(version="0.33.0"))


async def post_json(client: AsyncTestClient, body: object | bytes, path: str = "/prompt"):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, content=content, headers={"content-type": "application/json"})
