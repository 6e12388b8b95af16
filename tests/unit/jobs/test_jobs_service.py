"""JobService over the real runner and a scripted ComfyUI edge: records for every job, run and submit, list with
filters and cursors, idempotent cancel of queued and running jobs, event streams joined late, listeners told once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from comfyui_api.comfy import messages as msg
from comfyui_api.errors import ExecutionFailed, InvalidRequest, JobNotFound
from comfyui_api.jobs.model import JobRequest
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.store import JobRecord, MemoryJobStore
from tests.unit.jobs.fake_comfy import success_script
from tests.unit.jobs.test_jobs_runner import GRAPH, PNG, Harness


class Listener:
    def __init__(self) -> None:
        self.ended: list[tuple[str, str]] = []

    def job_ended(self, record: JobRecord) -> None:
        self.ended.append((record.id, record.status))


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


def service_for(harness: Harness) -> tuple[JobService, Listener]:
    service = JobService(harness.runner, MemoryJobStore())
    listener = Listener()
    service.add_listener(listener)
    return service, listener


def request(job_id: str, timeout_s: float = 5.0) -> JobRequest:
    return JobRequest(id=job_id, graph=GRAPH, timeout_s=timeout_s, metadata={"who": job_id})


async def test_run_keeps_a_record_with_the_outputs_held_for_the_caller(tmp_path: Path, http) -> None:
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    service, listener = service_for(harness)
    record = await service.run(request("sync-1"))
    assert record.status == "completed" and record.result is not None
    path = record.result.outputs[0].path
    assert path is not None and path.read_bytes() == PNG
    service.store.get("sync-1").release_files()
    assert path.exists(), "held by the caller of run"
    record.unhold()
    assert not path.exists()
    await service.settle(5)
    assert listener.ended == [("sync-1", "completed")]


async def test_a_failed_run_raises_its_error_and_keeps_the_failed_record(tmp_path: Path, http) -> None:
    def script(pid, graph):
        failure = msg.ExecutionError(pid, "1", "EmptyImage", "ValueError", "bad", (), (), 1)
        return [msg.ExecutionStart(pid, 1), failure]

    harness = Harness(tmp_path, http, script)
    service, listener = service_for(harness)
    with pytest.raises(ExecutionFailed, match="bad"):
        await service.run(request("sync-fail"))
    record = service.get("sync-fail")
    assert record.status == "failed" and record.error is not None and record.result is None
    await service.settle(5)
    assert listener.ended == [("sync-fail", "failed")]


async def test_submit_then_poll_and_list(tmp_path: Path, http) -> None:
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    service, _ = service_for(harness)
    for name in ("a", "b", "c"):
        await service.submit(request(name))
    done = await service.wait("c", timeout_s=5)
    await asyncio.gather(*(service.wait(name, 5) for name in ("a", "b")))
    assert done.status == "completed"
    page, cursor = service.list(limit=2)
    assert [r.id for r in page] == ["c", "b"] and cursor == "b"
    page, cursor = service.list(limit=2, cursor=cursor)
    assert [r.id for r in page] == ["a"] and cursor is None
    assert [r.id for r in service.list(status="running")[0]] == []
    with pytest.raises(InvalidRequest) as bad_status:
        service.list(status="done")
    assert bad_status.value.field == "status"
    with pytest.raises(InvalidRequest) as bad_limit:
        service.list(limit=0)
    assert bad_limit.value.field == "limit"
    with pytest.raises(JobNotFound):
        service.get("zzz")


async def test_cancel_a_queued_and_a_running_job_idempotently(tmp_path: Path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [msg.ExecutionStart(pid, 1), msg.Executing(pid, "1")])
    service, listener = service_for(harness)
    running = await service.submit(request("running", timeout_s=30))
    await asyncio.wait_for(_until(lambda: running.status == "running"), 5)
    queued = await service.submit(request("queued", timeout_s=30))
    assert await service.cancel("running") is True
    assert await service.cancel("queued") is True
    assert await service.cancel("running") is False, "already cancelled"
    assert await service.cancel("unknown") is False
    assert (running.status, queued.status) == ("cancelled", "cancelled")
    await service.settle(5)
    assert sorted(listener.ended) == [("queued", "cancelled"), ("running", "cancelled")]


async def test_events_joined_mid_job_and_after_it_tell_the_whole_story(tmp_path: Path, http) -> None:
    gate = asyncio.Event()

    def script(pid, graph):
        steps = success_script(tmp_path / "output", PNG)(pid, graph)
        return [steps[0], gate.wait, *steps[1:]]  # the job pauses after it started

    harness = Harness(tmp_path, http, script)
    service, _ = service_for(harness)
    record = await service.submit(request("story"))
    await asyncio.wait_for(_until(lambda: record.status == "running"), 5)
    mid = asyncio.create_task(_names(service, "story"))
    await asyncio.sleep(0.05)
    gate.set()
    during = await asyncio.wait_for(mid, 5)
    after = await _names(service, "story")
    assert during == after
    assert after[:2] == ["JobAccepted", "JobStarted"] and after[-1] == "JobCompleted"


async def _names(service: JobService, job_id: str) -> list[str]:
    return [type(item.event).__name__ async for item in service.subscribe(job_id) if item is not None]


async def _until(check) -> None:
    while not check():  # noqa: ASYNC110 - the record offers no event for its intermediate states
        await asyncio.sleep(0.01)
