"""The job service: the one place a job's life is owned, whichever front door it came through. `submit` admits
and starts a job and keeps its record; `run` submits and waits; `get`, `list`, `cancel`, `wait` and `subscribe`
serve every adapter (HTTP, SSE, webhooks, later RunPod and AMQP) from the same record and event log.

Runs jobs through the `JobRunner`; keeps records in a store, which owns their output files. No HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from comfyui_api.errors import ComfyApiError, InvalidRequest, JobCancelled
from comfyui_api.jobs.broker import SequencedEvent
from comfyui_api.jobs.model import JobFailed, JobRequest, JobResult
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.runner import JobRunner
from comfyui_api.jobs.store import STATES, JobRecord, MemoryJobStore
from comfyui_api.jobs.tracing import NO_TRACER, JobTracer
from comfyui_api.storage.registry import UPLOAD_REQUEST_KEYS

log = logging.getLogger(__name__)

MAX_LIST_LIMIT = 500


class JobListener(Protocol):
    """Told of every job's end, after its record holds the outcome (e.g. webhooks). A listener that reads the
    output files later must `record.acquire()` before it returns (and `unhold` when done)."""

    def job_ended(self, record: JobRecord) -> None: ...


UrlCheck = Callable[[str, str], Awaitable[None]]
"""`(url, field)`: returns when a request may make us reach `url`, raises URLRefused naming `field` when not."""


def request_urls(request: JobRequest) -> list[tuple[str, str]]:
    """The URLs a job will send to once it has run, with the request field naming each: webhooks, an http upload
    target and per-request S3 endpoints. (Media and model URLs are checked when they are fetched, naming their
    input.)"""
    urls: list[tuple[str, str]] = []
    if request.webhook_v2_url:
        urls.append((request.webhook_v2_url, "webhook_v2"))
    if request.webhook_v1_url:
        urls.append((request.webhook_v1_url, "webhook"))
    if request.webhook_runpod_url:
        urls.append((request.webhook_runpod_url, "webhook"))
    if request.upload is not None and request.upload.provider == "http":
        prefix = request.upload.options.get("url_prefix")
        if isinstance(prefix, str):
            urls.append((prefix, f"{UPLOAD_REQUEST_KEYS['http']}.url_prefix"))
    for index, credential in enumerate(request.credentials):
        for name in ("endpoint_url", "endpoint"):
            endpoint = credential.auth.get(name)
            if isinstance(endpoint, str) and endpoint:
                urls.append((endpoint, f"credentials[{index}].auth.{name}"))
    return urls


class JobService:
    def __init__(
        self,
        runner: JobRunner,
        store: MemoryJobStore,
        *,
        url_check: UrlCheck | None = None,
        tracer: JobTracer = NO_TRACER,
    ):
        self._runner = runner
        self._store = store
        self._url_check = url_check
        self._tracer = tracer
        self._listeners: list[JobListener] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def registry(self) -> JobRegistry:
        return self._runner.registry

    @property
    def store(self) -> MemoryJobStore:
        return self._store

    def add_listener(self, listener: JobListener) -> None:
        self._listeners.append(listener)

    async def submit(self, request: JobRequest, *, report_queue_position: bool = False) -> JobRecord:
        """Admit and start a job; its record from then on. Refusals (a URL the outbound guard refuses, ComfyUI not
        ready, queue full, id live) are raised here, before anything runs or is recorded."""
        if self._url_check is not None:
            for url, field in request_urls(request):
                await self._url_check(url, field)
        record = JobRecord(request)
        trace = self._tracer.start_job(request)
        try:
            task = self._runner.start(request, record.apply, report_queue_position=report_queue_position, trace=trace)
        except ComfyApiError as exc:
            trace.end("refused", exc)
            raise
        record.trace = trace
        task.add_done_callback(_retrieve_outcome)  # the record holds the outcome; asyncio need not report it
        self._store.put(record)
        follower = asyncio.create_task(self._follow(record, task), name=f"job-record:{request.id}")
        self._tasks.add(follower)
        follower.add_done_callback(self._tasks.discard)
        return record

    async def run(self, request: JobRequest) -> JobRecord:
        """Submit and wait for the outcome: the completed record (its `result` set), or the job's ComfyApiError. The
        record comes back held (`JobRecord.acquire`): its files stay until the caller's `unhold`. A caller that is
        cancelled cancels the job (and waits, bounded, for it to wind down)."""
        record = await self.submit(request)
        record.acquire()
        try:
            await record.wait()
        except asyncio.CancelledError:
            record.unhold()
            await self.cancel(request.id, "cancelled: the client went away")
            raise
        if record.result is not None:
            return record
        record.unhold()
        raise record.error or ComfyApiError(f"job {request.id} ended without an outcome")

    def get(self, job_id: str) -> JobRecord:
        """The job's record; JobNotFound naming the id."""
        return self._store.get(job_id)

    def list(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[JobRecord], str | None]:
        """Records newest first, optionally of one status; `cursor` is the last id of the previous page."""
        if status is not None and status not in STATES:
            raise InvalidRequest(f"status must be one of {', '.join(STATES)}", field="status")
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidRequest(f"limit must be between 1 and {MAX_LIST_LIMIT}", field="limit")
        records = list(self._store)
        if cursor is not None:
            ids = [r.id for r in records]
            if cursor not in ids:
                raise InvalidRequest("cursor names no listed job (it may have expired)", field="cursor")
            records = records[ids.index(cursor) + 1 :]
        if status is not None:
            records = [r for r in records if r.status == status]
        page = records[:limit]
        next_cursor = page[-1].id if len(records) > limit else None
        return page, next_cursor

    async def cancel(self, job_id: str, reason: str = "cancelled on request") -> bool:
        """Cancel a pending or running job (idempotent): True when it was stopped, False when it had ended or is
        unknown."""
        if job_id not in self.registry:
            return False
        entry = self.registry.get(job_id)
        if entry.cancel_requested or entry.task is None or entry.task.done():
            return False
        await self._runner.interrupt(job_id, reason)
        return True

    async def wait(self, job_id: str, timeout_s: float) -> JobRecord:
        """The record once the job has ended, or as it is after `timeout_s`."""
        record = self.get(job_id)
        try:
            async with asyncio.timeout(timeout_s):
                await record.wait()
        except TimeoutError:
            pass
        return record

    def subscribe(
        self, job_id: str, after_seq: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncIterator[SequencedEvent | None]:
        """The job's events after `after_seq` (replayed, then live) up to its terminal event."""
        return self.get(job_id).events.follow(after_seq, heartbeat_s=heartbeat_s)

    async def settle(self, timeout_s: float) -> None:
        """Wait (bounded) until the records of jobs that ended have been settled and their listeners told (at
        shutdown, after the jobs were drained)."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=max(0.0, timeout_s))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _follow(self, record: JobRecord, task: asyncio.Task[JobResult]) -> None:
        # asyncio.wait, not await: cancelling this follower must never cancel the job itself.
        await asyncio.wait([task])
        if not record.is_terminal:
            # The runner was cancelled without a reason (e.g. at shutdown): the record still needs its end.
            error = _task_error(task) or JobCancelled(f"job {record.id} was cancelled")
            record.apply(JobFailed(record.id, error))
        record.trace.end(record.status, record.error)
        for listener in self._listeners:  # first: a listener holds the record's files while it reads them
            try:
                listener.job_ended(record)
            except Exception:  # task boundary: one listener's failure must not reach the others
                log.exception("job %s: a job listener failed", record.id)
        self._store.ended(record)


def _retrieve_outcome(task: asyncio.Task[JobResult]) -> None:
    if not task.cancelled():
        task.exception()


def _task_error(task: asyncio.Task[JobResult]) -> ComfyApiError | None:
    if task.cancelled():
        return None
    error = task.exception()
    if error is None or isinstance(error, ComfyApiError):
        return error
    return ComfyApiError(f"internal error while running job: {type(error).__name__}")
