"""`JOB_STORE=sqlite:///path/jobs.db`: the memory store, journaled to an embedded SQLite file so that records, the
locations of kept output files and pending webhook deliveries survive a restart.

On open, a job that was still queued or running when the process died is marked failed with a reason that says so
(its webhook then goes out like any other), and a webhook still pending is sent again: the journal is the outbox.
Credentials are never written. Small synchronous writes on the event loop: one row per change of a job's state.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from comfyui_api.errors import ComfyApiError, ComfyUnavailable
from comfyui_api.jobs.model import (
    ConvertSpec,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobResult,
    OutputFile,
    Stats,
    UploadTarget,
)
from comfyui_api.jobs.store import JobRecord, MemoryJobStore, StoreLimits, WebhookState

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    body TEXT NOT NULL
)
"""


def _error_classes() -> dict[str, type[ComfyApiError]]:
    found: dict[str, type[ComfyApiError]] = {}
    pending: list[type[ComfyApiError]] = [ComfyApiError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.kind, cls)
        pending.extend(cls.__subclasses__())
    return found


def _error_from(body: Mapping[str, Any]) -> ComfyApiError:
    """An error as stored (`to_dict`), of the class its `type` names, without calling that class's constructor."""
    cls = _error_classes().get(str(body.get("type")), ComfyApiError)
    error = cls.__new__(cls)
    Exception.__init__(error, body.get("message", ""))
    error.message = str(body.get("message", ""))
    error.field = body.get("field")
    error.details = dict(body.get("details") or {})
    return error


def _output_to_dict(output: OutputFile) -> dict[str, Any]:
    data = asdict(output)
    data["path"] = str(output.path) if output.path is not None else None
    return data


def _output_from(data: Mapping[str, Any]) -> OutputFile:
    values = dict(data)
    values["path"] = Path(values["path"]) if values.get("path") else None
    return OutputFile(**values)


def _request_to_dict(request: JobRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "graph": request.graph,
        "timeout_s": request.timeout_s,
        "webhook_v2_url": request.webhook_v2_url,
        "webhook_v1_url": request.webhook_v1_url,
        "webhook_runpod_url": request.webhook_runpod_url,
        "source": request.source,
        "run_async": request.run_async,
        "upload": asdict(request.upload) if request.upload is not None else None,
        "convert": asdict(request.convert) if request.convert is not None else None,
        "fallback_to_base64": request.fallback_to_base64,
        "metadata": request.metadata,
    }  # never credentials


def _request_from(data: Mapping[str, Any]) -> JobRequest:
    upload = data.get("upload")
    convert = data.get("convert")
    return JobRequest(
        id=data["id"],
        graph=data["graph"],
        timeout_s=float(data["timeout_s"]),
        webhook_v2_url=data.get("webhook_v2_url"),
        webhook_v1_url=data.get("webhook_v1_url"),
        webhook_runpod_url=data.get("webhook_runpod_url"),
        source=str(data.get("source") or "http"),
        run_async=bool(data.get("run_async")),
        upload=UploadTarget(**upload) if upload else None,
        convert=ConvertSpec(**convert) if convert else None,
        fallback_to_base64=bool(data.get("fallback_to_base64")),
        metadata=data.get("metadata"),
    )


def record_to_dict(record: JobRecord) -> dict[str, Any]:
    result = record.result
    return {
        "request": _request_to_dict(record.request),
        "status": record.status,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "percent": record.percent,
        "node": record.node,
        "result": {
            "graph": result.graph,
            "outputs": [_output_to_dict(o) for o in result.outputs],
            "texts": result.texts,
            "stats": asdict(result.stats),
        }
        if result is not None
        else None,
        "error": record.error.to_dict() if record.error is not None else None,
        "webhook": asdict(record.webhook) if record.webhook is not None else None,
        "files_released": record.files_released,
    }


def record_from(data: Mapping[str, Any], *, died_reason: str) -> tuple[JobRecord, bool]:
    """The record as stored, ended if it had not (with `died_reason`); True when it was ended here."""
    record = JobRecord(_request_from(data["request"]), created_at=float(data["created_at"]))
    record.started_at = data.get("started_at")
    job_id = record.id
    stored = data.get("result")
    interrupted = False
    if data["status"] == "completed" and stored is not None:
        outputs = [_output_from(o) for o in stored["outputs"]]
        result = JobResult(job_id, stored["graph"], outputs, list(stored["texts"]), Stats(**stored["stats"]))
        record.apply(JobCompleted(job_id, result))
    elif data.get("error") is not None:
        record.apply(JobFailed(job_id, _error_from(data["error"])))
    else:
        interrupted = True
        record.apply(JobFailed(job_id, ComfyUnavailable(died_reason)))
    if not interrupted:
        record.finished_at = data.get("finished_at")
    record.percent = float(data.get("percent") or record.percent)
    record.node = data.get("node")
    record.files_released = bool(data.get("files_released"))
    if data.get("webhook") is not None:
        record.webhook = WebhookState(**data["webhook"])
    return record, interrupted


class SqliteJobStore(MemoryJobStore):
    """Records in memory, every change journaled to `path`. `recovered` lists what opening found: records whose job
    died with the previous process, and records whose webhook was still pending (both need their webhook sent)."""

    def __init__(self, path: Path, limits: StoreLimits | None = None, *, clock: Callable[[], float] = time.time):
        super().__init__(limits or StoreLimits(), clock=clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit: each write is durable on return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._seq = 0
        self._load()

    def _load(self) -> None:
        rows = self._db.execute("SELECT id, seq, body FROM jobs ORDER BY seq").fetchall()
        for _, seq, body in rows:
            self._seq = max(self._seq, seq)
            data = json.loads(body)
            reason = f"the server stopped while job {data['request']['id']} was {data['status']}; it was not finished"
            record, interrupted = record_from(data, died_reason=reason)
            self._restore(record)
            if interrupted:
                log.warning("job %s: %s", record.id, reason)
                self.save(record)
            if interrupted or (record.webhook is not None and record.webhook.state == "pending"):
                self.recovered.append(record)
        if rows:
            log.info("job store %s: %d record(s) restored", self._path, len(rows))
        self.evict()

    def save(self, record: JobRecord) -> None:
        """Write the record's current state (also called by the webhook sender as its state changes)."""
        if record.id not in self._records or self._records[record.id] is not record:
            return
        self._seq += 1
        body = json.dumps(record_to_dict(record), separators=(",", ":"))
        self._db.execute(
            "INSERT INTO jobs (id, seq, body) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            (record.id, self._seq, body),
        )

    def kept_paths(self) -> Iterator[Path]:
        """Every output file a record still keeps (the rest of the work folder is debris of a killed process)."""
        for record in self._records.values():
            if record.result is not None and not record.files_released:
                yield from (o.path for o in record.result.outputs if o.path is not None)

    def put(self, record: JobRecord) -> None:
        super().put(record)
        self._db.execute("DELETE FROM jobs WHERE id = ?", (record.id,))  # a resubmitted id starts a new row
        self.save(record)

    def ended(self, record: JobRecord) -> None:
        self.save(record)
        super().ended(record)

    def _drop(self, record: JobRecord, why: str) -> None:
        super()._drop(record, why)
        self._db.execute("DELETE FROM jobs WHERE id = ?", (record.id,))

    def close(self) -> None:
        """Closes the journal; the records and their files stay for the next start."""
        self._db.close()
