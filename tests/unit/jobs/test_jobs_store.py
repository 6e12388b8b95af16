"""MemoryJobStore and JobRecord: records follow their job's events; finished records go by count and by age, their
files by the output-size bound (oldest first), never a live job's; files a reader holds stay until it lets go."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.errors import ExecutionFailed, JobCancelled, JobNotFound
from comfyui_api.jobs.model import (
    JobCompleted,
    JobFailed,
    JobQueued,
    JobRequest,
    JobResult,
    JobStarted,
    OutputFile,
    ProgressUpdated,
    Stats,
)
from comfyui_api.jobs.store import JobRecord, MemoryJobStore, StoreLimits


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(job_id: str, **fields: object) -> JobRecord:
    return JobRecord(JobRequest(id=job_id, graph={}, timeout_s=10, **fields))  # type: ignore[arg-type]


def finish(rec: JobRecord, tmp_path: Path, size_bytes: int = 10, when: float | None = None) -> Path:
    path = tmp_path / f"{rec.id}.png"
    path.write_bytes(b"x" * size_bytes)
    output = OutputFile("9", "image", path.name, "", "output", "image/png", size_bytes, path=path)
    rec.apply(JobCompleted(rec.id, JobResult(rec.id, {}, [output], [], Stats())))
    if when is not None:
        rec.finished_at = when
    return path


def test_a_record_follows_its_job() -> None:
    rec = record("r1", metadata={"user": "u"})
    assert (rec.status, rec.queue_position) == ("queued", None)
    rec.apply(JobQueued("r1", 3))
    assert rec.queue_position == 3
    rec.apply(JobStarted("r1"))
    assert (rec.status, rec.queue_position) == ("running", 0) and rec.started_at is not None
    rec.apply(ProgressUpdated("r1", "3", 5, 10, 40.0))
    rec.apply(ProgressUpdated("r1", "3", 1, 10, 35.0))  # a lower figure never moves it back
    assert (rec.percent, rec.node) == (40.0, "3")
    rec.apply(JobFailed("r1", ExecutionFailed("boom", node_id="3", node_type="X", exception_type="E")))
    assert rec.status == "failed" and rec.error is not None and rec.finished_at is not None
    rec.apply(JobCompleted("r1", JobResult("r1", {}, [], [], Stats())))  # after the end: ignored
    assert rec.status == "failed" and rec.result is None
    assert rec.events.last_seq == 5


def test_a_cancelled_job_is_cancelled_not_failed() -> None:
    rec = record("r2")
    rec.apply(JobFailed("r2", JobCancelled("job r2 was cancelled")))
    assert rec.status == "cancelled"


def test_unknown_ids_are_404s_naming_the_id() -> None:
    with pytest.raises(JobNotFound, match="'nope'"):
        MemoryJobStore().get("nope")


def test_eviction_by_count_drops_the_oldest_finished_and_never_a_live_job(tmp_path: Path) -> None:
    store = MemoryJobStore(StoreLimits(max_records=3))
    live = record("live")
    store.put(live)
    paths = {}
    for name in ("a", "b", "c", "d"):
        rec = record(name)
        store.put(rec)
        paths[name] = finish(rec, tmp_path)
        store.ended(rec)
    assert [r.id for r in store] == ["d", "c", "live"]  # newest first; a and b went, the live job stayed
    assert not paths["a"].exists() and not paths["b"].exists() and paths["d"].exists()


def test_eviction_by_age(tmp_path: Path) -> None:
    clock = Clock()
    store = MemoryJobStore(StoreLimits(record_ttl_s=60), clock=clock)
    old, new = record("old"), record("new")
    for rec in (old, new):
        store.put(rec)
    old_path = finish(old, tmp_path, when=clock.now - 61)
    finish(new, tmp_path, when=clock.now)
    for rec in (old, new):
        store.ended(rec)  # as the job service does once a job's listeners were told
    with pytest.raises(JobNotFound):
        store.get("old")
    assert store.get("new") is new and not old_path.exists()


def test_the_output_size_bound_removes_the_oldest_files_and_keeps_the_records(tmp_path: Path) -> None:
    store = MemoryJobStore(StoreLimits(max_output_bytes=25))
    recs = [record(name) for name in ("a", "b", "c")]
    paths = []
    for rec in recs:
        store.put(rec)
        paths.append(finish(rec, tmp_path, size_bytes=10))
        store.ended(rec)
    assert [p.exists() for p in paths] == [False, True, True]
    assert recs[0].files_released and store.get("a") is recs[0]
    assert recs[0].output_bytes == 0 and recs[2].output_bytes == 10


def test_files_a_reader_holds_stay_until_it_lets_go(tmp_path: Path) -> None:
    rec = record("held")
    path = finish(rec, tmp_path)
    with rec.hold():
        rec.release_files()
        assert path.exists()
    assert not path.exists() and rec.files_released


def test_a_resubmitted_id_replaces_the_finished_record(tmp_path: Path) -> None:
    store = MemoryJobStore()
    first = record("same")
    store.put(first)
    path = finish(first, tmp_path)
    second = record("same")
    store.put(second)
    assert store.get("same") is second and not path.exists()


def test_eviction_keeps_up_with_a_full_store(tmp_path: Path) -> None:
    """A full store evicts one record per new one, and the size bound stays exact, over many jobs: the bookkeeping
    (records in the order they ended, a running total of their bytes) matches a recount at every step."""
    clock = Clock()
    store = MemoryJobStore(StoreLimits(max_records=50, record_ttl_s=100, max_output_bytes=300), clock=clock)
    for number in range(400):
        rec = record(f"j{number}")
        store.put(rec)
        finish(rec, tmp_path, size_bytes=10 + number % 7, when=clock.now)
        store.ended(rec)
        clock.now += 1.0
        kept = [r for r in store if r.output_bytes]
        assert len(store) <= 50
        assert sum(r.output_bytes for r in kept) <= 300
        assert store._kept_bytes == sum(r.output_bytes for r in kept)
    ids = [r.id for r in store]
    assert ids == [f"j{number}" for number in range(399, 349, -1)]  # the newest 50, newest first
    with_files = [r.id for r in store if r.output_bytes]
    assert with_files == ids[: len(with_files)] and 20 <= len(with_files) <= 30  # the newest keep their files
    clock.now += 100
    assert len(list(store)) == 0  # all expired
    assert store._kept_bytes == 0
