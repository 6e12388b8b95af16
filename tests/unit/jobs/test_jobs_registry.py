"""The job registry: admission (duplicates, depth, draining), lookups and waiting for idle."""

from __future__ import annotations

import asyncio

import pytest

from comfyui_api.errors import CapacityError, InvalidRequest, JobNotFound
from comfyui_api.jobs.registry import JobRegistry


def test_admission_rules() -> None:
    registry = JobRegistry(max_depth=2, retry_after_s=7)
    registry.admit("a")
    with pytest.raises(InvalidRequest) as duplicate:
        registry.admit("a")
    assert duplicate.value.field == "id"
    registry.admit("b")
    assert registry.is_full
    with pytest.raises(CapacityError) as full:
        registry.admit("c")
    assert full.value.retry_after_s == 7
    registry.remove("a")
    registry.admit("c")
    assert [entry.id for entry in registry] == ["b", "c"]


def test_lookup_of_unknown_job() -> None:
    with pytest.raises(JobNotFound) as caught:
        JobRegistry().get("ghost")
    assert caught.value.status_code == 404


async def test_draining_refuses_new_jobs_and_waits_for_live_ones() -> None:
    registry = JobRegistry()
    registry.admit("a")
    registry.stop_admitting()
    assert not registry.accepting
    with pytest.raises(CapacityError, match="shutting down"):
        registry.admit("b")
    assert await registry.wait_idle(0.05) is False
    asyncio.get_running_loop().call_later(0.05, registry.remove, "a")
    assert await registry.wait_idle(2) is True


async def test_request_cancel_cancels_the_task() -> None:
    registry = JobRegistry()
    entry = registry.admit("a")
    entry.task = asyncio.create_task(asyncio.sleep(10))
    assert entry.request_cancel() is True
    with pytest.raises(asyncio.CancelledError):
        await entry.task
    assert entry.cancel_requested
    assert entry.request_cancel() is False
