"""Job records: what every front door can ask about a job during its life and after it (status, progress, outputs,
error, stats, metadata, webhook state), and the one owner of a finished job's output files: they are removed here,
and only here, when the record lets them go (evicted by count or age, or its files by the output-size bound).

`MemoryJobStore` keeps records in this process. No HTTP, no ComfyUI; callers hold records by reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from comfyui_api.errors import ComfyApiError, JobCancelled, JobNotFound
from comfyui_api.jobs.broker import JobEventLog
from comfyui_api.jobs.model import (
    JobCompleted,
    JobEvent,
    JobFailed,
    JobQueued,
    JobRequest,
    JobResult,
    JobStarted,
    NodeExecuting,
    ProgressUpdated,
)
from comfyui_api.jobs.outputs import discard
from comfyui_api.jobs.tracing import NO_TRACE, JobTrace

log = logging.getLogger(__name__)

STATES = ("queued", "running", "completed", "failed", "cancelled")
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})


@dataclass
class WebhookState:
    """How the job's webhook delivery went: state is pending | delivered | failed."""

    url: str
    state: str = "pending"
    attempts: int = 0
    last_error: str | None = None


@dataclass
class JobRecord:
    """One job. Mutated only by `apply` (the job's own events) and by the store; read by everyone."""

    request: JobRequest
    created_at: float = field(default_factory=time.time)  # epoch seconds
    status: str = "queued"
    started_at: float | None = None
    finished_at: float | None = None
    queue_position: int | None = None
    percent: float = 0.0
    node: str | None = None
    result: JobResult | None = None
    error: ComfyApiError | None = None
    webhook: WebhookState | None = None
    files_released: bool = False  # the output files were removed (the bound on kept output bytes)
    trace: JobTrace = field(default=NO_TRACE, repr=False, compare=False)  # its tracer's view (jobs/tracing.py)
    events: JobEventLog = field(init=False)
    _done: asyncio.Event = field(init=False, repr=False)
    _holds: int = field(default=0, init=False, repr=False)
    _release_pending: bool = field(default=False, init=False, repr=False)
    _release_uploaded_pending: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.events = JobEventLog(self.request.id)
        self._done = asyncio.Event()
        url = self.request.webhook_v2_url or self.request.webhook_v1_url or self.request.webhook_runpod_url
        if url is not None:
            self.webhook = WebhookState(url)

    @property
    def id(self) -> str:
        return self.request.id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATES

    @property
    def output_bytes(self) -> int:
        """Bytes of output files this record still keeps on disk."""
        if self.result is None or self.files_released:
            return 0
        return sum(o.size_bytes for o in self.result.outputs if o.path is not None)

    def apply(self, event: JobEvent) -> None:
        """The job's EventSink: update the record, then hand the event to its log (and so every subscriber)."""
        if self.is_terminal:
            return
        match event:
            case JobQueued(position=position):
                self.queue_position = position
            case JobStarted():
                self.status, self.started_at, self.queue_position = "running", time.time(), 0
            case NodeExecuting(node_id=node_id):
                self.node = node_id
            case ProgressUpdated(node_id=node_id, percent=percent):
                self.percent = max(self.percent, percent)
                self.node = node_id or self.node
            case JobCompleted(result=result):
                self.result, self.status, self.percent = result, "completed", 100.0
                self._finish()
            case JobFailed(error=error):
                self.error = error
                self.status = "cancelled" if isinstance(error, JobCancelled) else "failed"
                self._finish()
        self.events.publish(event)

    def _finish(self) -> None:
        self.finished_at = time.time()
        self.queue_position = None
        self._done.set()

    async def wait(self) -> None:
        """Until the job has ended (completed, failed or cancelled)."""
        await self._done.wait()

    def release_files(self) -> None:
        """Remove the local output files (uploaded outputs keep their URLs). Idempotent. While the record is held
        (a response or a webhook is reading them) the removal waits for the last holder."""
        if self._holds:
            self._release_pending = True
            return
        if self.result is not None and not self.files_released:
            discard(self.result.outputs)
        self.files_released = True

    def release_uploaded(self) -> None:
        """Remove the local copies of outputs that were uploaded (their URL is what every reader gets), now or
        when the last holder lets go."""
        if self._holds:
            self._release_uploaded_pending = True
            return
        if self.result is not None:
            discard([output for output in self.result.outputs if output.url is not None])

    def acquire(self) -> None:
        """Keep the output files in place until the matching `unhold` (a body is being read from them)."""
        self._holds += 1

    def unhold(self) -> None:
        self._holds -= 1
        if not self._holds and self._release_uploaded_pending:
            self._release_uploaded_pending = False
            self.release_uploaded()
        if not self._holds and self._release_pending:
            self._release_pending = False
            self.release_files()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """`acquire` ... `unhold` around a block."""
        self.acquire()
        try:
            yield
        finally:
            self.unhold()


@dataclass(frozen=True)
class StoreLimits:
    max_records: int = 1000  # JOB_RECORDS_MAX
    record_ttl_s: float = 3600.0  # JOB_RECORD_TTL_S: a finished record is dropped this long after it ended
    max_output_bytes: int = 2 * 1024**3  # JOB_OUTPUTS_MAX_GB: output files kept for finished jobs, in all


class MemoryJobStore:
    """Records in insertion order (oldest first). Live jobs are never evicted; finished ones go oldest first (in the
    order they ended) when there are more than `max_records` or they are older than `record_ttl_s`, and their files
    go (oldest first) when the finished jobs' files exceed `max_output_bytes`.

    Eviction costs what it removes, not what the store holds: finished records are kept in the order they ended,
    with a running total of the bytes their files take (recounted in full only when it passes the bound)."""

    def __init__(self, limits: StoreLimits = StoreLimits(), *, clock: Callable[[], float] = time.time):
        self._limits = limits
        self._clock = clock
        self._records: OrderedDict[str, JobRecord] = OrderedDict()
        self._finished: OrderedDict[str, JobRecord] = OrderedDict()  # in the order they ended
        self._file_bytes: OrderedDict[str, int] = OrderedDict()  # finished records that keep files: their bytes
        self._kept_bytes = 0  # the sum of _file_bytes
        # Records that need their webhook (re)sent once the server runs: filled by journaling stores at open.
        self.recovered: list[JobRecord] = []

    def put(self, record: JobRecord) -> None:
        """Add a new job's record. A finished record with the same id (a resubmission) is replaced and let go."""
        old = self._records.pop(record.id, None)
        if old is not None:
            self._forget(old.id)
            old.release_files()
        self._records[record.id] = record
        if record.is_terminal:
            self._note_finished(record)
        self.evict()

    def get(self, job_id: str) -> JobRecord:
        self._evict_expired()
        record = self._records.get(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r}", field="id")
        return record

    def __iter__(self) -> Iterator[JobRecord]:
        """Newest first."""
        self._evict_expired()
        return reversed(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def ended(self, record: JobRecord) -> None:
        """A job ended (and its listeners were told): local copies of uploaded outputs go, the other files now count
        against the bound, and the record can be evicted (every job's end must be reported here)."""
        record.release_uploaded()
        if self._records.get(record.id) is record:
            self._note_finished(record)
        self.evict()

    def evict(self) -> None:
        self._evict_expired()
        excess = len(self._records) - self._limits.max_records
        while excess > 0 and self._finished:
            self._drop(next(iter(self._finished.values())), "the store holds its maximum number of records")
            excess -= 1
        if self._kept_bytes <= self._limits.max_output_bytes:
            return
        self._recount_files()  # files may have gone since they were counted (a held record let go of them)
        while self._kept_bytes > self._limits.max_output_bytes and self._file_bytes:
            job_id, size = self._file_bytes.popitem(last=False)
            self._kept_bytes -= size
            record = self._finished[job_id]
            record.release_files()
            self.save(record)  # the record stays, without its files
            log.info("job %s: output files removed (kept outputs exceed the size bound)", record.id)

    def save(self, record: JobRecord) -> None:
        """Note a change of a record made outside its events (its webhook state, its files let go). Nothing to do in
        memory; a journaling store writes it."""

    def _restore(self, record: JobRecord) -> None:
        """Put back a record as a journal kept it (a journaling store, as it opens)."""
        self._records[record.id] = record
        if record.is_terminal:
            self._note_finished(record)

    def _note_finished(self, record: JobRecord) -> None:
        self._finished[record.id] = record
        self._finished.move_to_end(record.id)
        self._kept_bytes -= self._file_bytes.pop(record.id, 0)
        if size := record.output_bytes:
            self._file_bytes[record.id] = size
            self._kept_bytes += size

    def _recount_files(self) -> None:
        self._file_bytes = OrderedDict(
            (job_id, size) for job_id, record in self._finished.items() if (size := record.output_bytes)
        )
        self._kept_bytes = sum(self._file_bytes.values())

    def _forget(self, job_id: str) -> None:
        self._finished.pop(job_id, None)
        self._kept_bytes -= self._file_bytes.pop(job_id, 0)

    def _evict_expired(self) -> None:
        deadline = self._clock() - self._limits.record_ttl_s
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if oldest.finished_at is None or oldest.finished_at >= deadline:
                return
            self._drop(oldest, "its record expired")

    def _drop(self, record: JobRecord, why: str) -> None:
        self._records.pop(record.id, None)
        self._forget(record.id)
        record.release_files()
        log.debug("job %s: record dropped (%s)", record.id, why)

    def close(self) -> None:
        """Let every record go (the server stops; the work folder is removed with the files)."""
        for record in list(self._records.values()):
            self._drop(record, "the server stops")
