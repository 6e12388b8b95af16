"""The live jobs of one server, by id: their status and the task running each, for admission (queue depth),
interrupts, draining and status lookups; and the one map between our job ids and ComfyUI's prompt ids.

State lives on a `JobRegistry` object (one per server); nothing global. Knows nothing about HTTP or ComfyUI.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from comfyui_api.errors import CapacityError, InvalidRequest, JobNotFound
from comfyui_api.jobs.model import JobStatus

# Frames of a prompt can still be read by other listeners (system events) just after its job ended: the mapping of
# the last few ended prompts is kept so they are still named by job id.
_ENDED_PROMPTS_KEPT = 1024


@dataclass
class JobEntry:
    id: str  # ours: what callers see
    status: JobStatus = JobStatus.QUEUED
    prompt_id: str | None = None  # ComfyUI's id for this run (a fresh uuid4 per submission), once minted
    prefixes: tuple[str, ...] = ()  # the filename_prefixes the job's graph was sent with (each starts with its id)
    seen_outputs: dict[str, Any] = field(default_factory=dict)  # node id -> what ComfyUI reported it wrote
    task: asyncio.Task[Any] | None = None
    cancel_requested: bool = False
    cancel_reason: str = "cancelled"
    reports_queue_position: bool = False  # someone watches (SSE): ask ComfyUI where the job stands once queued

    def mark_running(self) -> None:
        self.status = JobStatus.RUNNING

    def request_cancel(self, reason: str = "cancelled") -> bool:
        """Mark the job cancelled (`reason` ends up in its error) and cancel its task; False when it has no task or
        it already ended."""
        self.cancel_requested = True
        self.cancel_reason = reason
        if self.task is None or self.task.done():
            return False
        self.task.cancel()
        return True


class JobRegistry:
    """Admits jobs up to `max_depth` (0 = unbounded) and tracks them until they end."""

    def __init__(self, *, max_depth: int = 0, retry_after_s: int = 5):
        self._max_depth = max_depth
        self._retry_after_s = retry_after_s
        self._jobs: dict[str, JobEntry] = {}
        self._by_prompt: dict[str, JobEntry] = {}  # ComfyUI prompt_id -> the live job it runs
        self._ended_prompts: OrderedDict[str, str] = OrderedDict()  # prompt_id -> job id, of recently ended jobs
        self._idle = asyncio.Event()
        self._idle.set()
        self._accepting = True

    @property
    def depth(self) -> int:
        return len(self._jobs)

    @property
    def accepting(self) -> bool:
        return self._accepting

    def stop_admitting(self) -> None:
        """From now on `admit` refuses every job (the server is draining); live jobs carry on."""
        self._accepting = False

    @property
    def is_full(self) -> bool:
        return self._max_depth > 0 and len(self._jobs) >= self._max_depth

    def admit(self, job_id: str) -> JobEntry:
        """Register a new job; CapacityError when full or draining, InvalidRequest when the id is already live."""
        if not self._accepting:
            raise CapacityError(
                "the server is shutting down; retry on another instance", retry_after_s=self._retry_after_s
            )
        if job_id in self._jobs:
            raise InvalidRequest(f"a job with id {job_id!r} is already running", field="id")
        if self.is_full:
            raise CapacityError(
                f"the queue is full ({self._max_depth} jobs); retry later", retry_after_s=self._retry_after_s
            )
        entry = JobEntry(job_id)
        self._jobs[job_id] = entry
        self._idle.clear()
        return entry

    def get(self, job_id: str) -> JobEntry:
        entry = self._jobs.get(job_id)
        if entry is None:
            raise JobNotFound(f"no job with id {job_id!r} is queued or running", field="id")
        return entry

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def __iter__(self) -> Iterator[JobEntry]:
        return iter(list(self._jobs.values()))

    def new_prompt(self, entry: JobEntry) -> str:
        """Mint ComfyUI's prompt_id for one submission of a live job. Always a fresh canonical uuid4, never the job
        id: ComfyUI >= ~0.25 refuses any other form and newer ones refuse a prompt_id they have seen before, so a
        caller's own id (`first-image`) and a resubmitted id both work on every version."""
        if entry.prompt_id is not None:
            self._forget_prompt(entry)
        entry.prompt_id = str(uuid.uuid4())
        self._by_prompt[entry.prompt_id] = entry
        return entry.prompt_id

    def job_id_for_prompt(self, prompt_id: str) -> str | None:
        """Our job id for a ComfyUI prompt_id; None when the prompt is not one of our live jobs."""
        entry = self._by_prompt.get(prompt_id)
        return entry.id if entry is not None else self._ended_prompts.get(prompt_id)

    def _forget_prompt(self, entry: JobEntry) -> None:
        assert entry.prompt_id is not None
        self._by_prompt.pop(entry.prompt_id, None)
        self._ended_prompts[entry.prompt_id] = entry.id
        while len(self._ended_prompts) > _ENDED_PROMPTS_KEPT:
            self._ended_prompts.popitem(last=False)

    def remove(self, job_id: str) -> None:
        entry = self._jobs.pop(job_id, None)
        if entry is not None and entry.prompt_id is not None:
            self._forget_prompt(entry)
        if not self._jobs:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no job is live; False when `timeout_s` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True
