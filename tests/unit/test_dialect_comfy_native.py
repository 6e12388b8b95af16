"""ComfyUI's /ws frames for one job's events, as the /comfyui door relays them to the client that queued the job."""

from __future__ import annotations

from typing import Any

from comfyui_api.dialects.comfy_native import JobFrames
from comfyui_api.errors import ExecutionFailed, JobCancelled
from comfyui_api.jobs.model import (
    JobAccepted,
    JobCompleted,
    JobFailed,
    JobQueued,
    JobResult,
    JobStarted,
    NodeExecuting,
    NodesCached,
    NodeStates,
    OutputFile,
    ProgressUpdated,
)


def kinds(frames: list[dict[str, Any]]) -> list[str]:
    return [frame["type"] for frame in frames]


def test_a_run_becomes_the_frames_comfyui_sends_in_its_order() -> None:
    native = JobFrames("p-1")
    assert native.frames(JobAccepted("j"), 1) == [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}
    ]
    assert native.frames(JobQueued("j", 0), 1) == [], "ComfyUI sends none"
    [start] = native.frames(JobStarted("j"), 1)
    assert start["type"] == "execution_start" and start["data"]["prompt_id"] == "p-1"
    assert isinstance(start["data"]["timestamp"], int)
    [cached] = native.frames(NodesCached("j", ("4", "6")), 1)
    assert cached["data"]["nodes"] == ["4", "6"] and cached["data"]["prompt_id"] == "p-1"
    state = {"value": 0.0, "max": 1.0, "state": "running", "node_id": "3", "prompt_id": "comfy-own-id"}
    [snapshot] = native.frames(NodeStates("j", {"3": state}), 1)
    assert snapshot == {
        "type": "progress_state",
        "data": {"prompt_id": "p-1", "nodes": {"3": {**state, "prompt_id": "p-1"}}},
    }
    assert kinds(native.frames(NodeExecuting("j", "3", "KSampler"), 1)) == ["executing"]
    assert native.frames(ProgressUpdated("j", "3", 0.0, 1.0, 10.0, reported=False), 1) == []  # our own mark
    [step] = native.frames(ProgressUpdated("j", "3", 2, 4, 40.0), 1)
    assert step["data"] == {"value": 2, "max": 4, "prompt_id": "p-1", "node": "3"}
    output = OutputFile("9", "image", "a.png", "", "output", "image/png", 68)
    ended = native.frames(JobCompleted("j", JobResult("j", {}, [output], [], None)), 0)  # type: ignore[arg-type]
    assert kinds(ended) == ["executed", "execution_success", "status", "executing"]
    assert ended[0]["data"]["output"] == {"images": [{"filename": "a.png", "subfolder": "", "type": "output"}]}
    assert ended[-1]["data"] == {"node": None, "prompt_id": "p-1"}


def test_execution_cached_is_sent_even_when_nothing_was_reused() -> None:
    native = JobFrames("p-2")
    native.frames(JobStarted("j"), 0)
    first = native.frames(NodeExecuting("j", "1", "EmptyImage"), 0)
    assert kinds(first) == ["execution_cached", "executing"] and first[0]["data"]["nodes"] == []
    assert kinds(native.frames(NodeExecuting("j", "2", "SaveImage"), 0)) == ["executing"]  # once


def test_a_failed_or_interrupted_run_ends_as_comfyui_ends_one() -> None:
    failure = ExecutionFailed("boom", node_id="3", node_type="KSampler", exception_type="RuntimeError")
    ended = JobFrames("p-3").frames(JobFailed("j", failure), 0)
    assert kinds(ended) == ["execution_error", "status", "executing"]
    assert ended[0]["data"]["node_id"] == "3" and ended[0]["data"]["exception_type"] == "RuntimeError"
    assert ended[0]["data"]["current_outputs"] == []
    assert "timestamp" in ended[0]["data"]
    stopped = JobFrames("p-4").frames(JobFailed("j", JobCancelled("cancelled")), 0)
    assert kinds(stopped) == ["execution_interrupted", "status", "executing"]
