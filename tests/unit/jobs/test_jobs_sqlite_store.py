"""SqliteJobStore: what a restart restores (records, kept files, webhook state), jobs that died with the process
failed with a reason, pending webhooks recovered for resending, eviction journaled, credentials never written."""

from __future__ import annotations

from pathlib import Path

from comfyui_api.errors import ExecutionFailed, JobCancelled
from comfyui_api.jobs.model import (
    Credential,
    JobCompleted,
    JobFailed,
    JobRequest,
    JobResult,
    JobStarted,
    OutputFile,
    Stats,
    UploadTarget,
)
from comfyui_api.jobs.sqlite_store import SqliteJobStore
from comfyui_api.jobs.store import JobRecord, StoreLimits


def request(job_id: str, **fields: object) -> JobRequest:
    return JobRequest(id=job_id, graph={"1": {"class_type": "X"}}, timeout_s=10, **fields)  # type: ignore[arg-type]


def completed(rec: JobRecord, path: Path) -> None:
    path.write_bytes(b"png")
    output = OutputFile("9", "image", path.name, "", "output", "image/png", 3, path=path)
    rec.apply(JobStarted(rec.id))
    rec.apply(JobCompleted(rec.id, JobResult(rec.id, {"g": 1}, [output], ["text"], Stats(total_ms=12.5))))


def test_a_restart_restores_records_files_and_errors(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = SqliteJobStore(db)
    done, broken, gone = JobRecord(request("done", metadata={"m": 1})), JobRecord(request("broken")), None
    for rec in (done, broken):
        store.put(rec)
    completed(done, tmp_path / "done.png")
    store.ended(done)
    broken.apply(JobFailed("broken", ExecutionFailed("boom", node_id="3", node_type="K", exception_type="E")))
    store.ended(broken)
    store.close()

    again = SqliteJobStore(db)
    restored = again.get("done")
    assert (restored.status, restored.request.metadata, restored.percent) == ("completed", {"m": 1}, 100.0)
    assert restored.result is not None and restored.result.texts == ["text"]
    assert restored.result.stats.total_ms == 12.5 and restored.result.outputs[0].path == tmp_path / "done.png"
    assert list(again.kept_paths()) == [tmp_path / "done.png"]
    failed = again.get("broken")
    assert failed.status == "failed" and isinstance(failed.error, ExecutionFailed)
    assert failed.error.to_dict() == broken.error.to_dict()  # type: ignore[union-attr]
    assert again.recovered == [] and gone is None
    assert [item.event.__class__.__name__ for item in restored.events.replay()] == ["JobCompleted"]


def test_jobs_that_died_with_the_process_are_failed_and_recovered(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = SqliteJobStore(db)
    running = JobRecord(request("running", webhook_v2_url="http://127.0.0.1:9/hook"))
    store.put(running)
    running.apply(JobStarted("running"))
    outbox = JobRecord(request("outbox", webhook_v2_url="http://127.0.0.1:9/hook"))
    store.put(outbox)
    outbox.apply(JobFailed("outbox", JobCancelled("job outbox was cancelled")))
    store.ended(outbox)  # its webhook is still pending: the process dies now
    store.close()

    again = SqliteJobStore(db)
    died = again.get("running")
    assert died.status == "failed" and died.error is not None
    assert "the server stopped while job running was queued" in died.error.message
    assert {r.id for r in again.recovered} == {"running", "outbox"}
    assert again.get("outbox").status == "cancelled"
    again.close()
    assert SqliteJobStore(db).get("running").status == "failed", "the failure itself was journaled"


def test_eviction_is_journaled_and_credentials_are_never_written(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    store = SqliteJobStore(db, StoreLimits(max_records=1))
    secret = Credential("https://files.example.com/**", {"type": "bearer", "token": "s3cr3t-token"})
    upload = UploadTarget("s3", {"bucket": "b"})
    for name in ("first", "second"):
        rec = JobRecord(request(name, credentials=(secret,), upload=upload))
        store.put(rec)
        completed(rec, tmp_path / f"{name}.png")
        store.ended(rec)
    store.close()
    written = b"".join(path.read_bytes() for path in tmp_path.glob("jobs.db*"))  # the database and its WAL, if any
    assert b"s3cr3t-token" not in written and b"files.example.com" not in written
    again = SqliteJobStore(db)
    assert [r.id for r in again] == ["second"]
    assert again.get("second").request.upload == upload and again.get("second").request.credentials == ()
