"""ComfyUI's /ws frames for our job events, as the /comfyui door relays them to the client that queued the job."""

from __future__ import annotations

from comfyui_api.dialects.comfy_native import frames
from comfyui_api.jobs.model import JobAccepted, JobQueued, JobStarted, NodeExecuting, NodesCached, ProgressUpdated


def test_each_event_becomes_the_frame_comfyui_would_send() -> None:
    assert frames(JobStarted("j"), "p-1") == [{"type": "execution_start", "data": {"prompt_id": "p-1"}}]
    assert frames(NodesCached("j", ("4", "6")), "p-1") == [
        {"type": "execution_cached", "data": {"nodes": ["4", "6"], "prompt_id": "p-1"}}
    ]
    assert frames(NodeExecuting("j", "3", "KSampler"), "p-1")[0]["data"]["node"] == "3"
    assert frames(ProgressUpdated("j", "3", 2, 4, 40.0), "p-1")[0]["data"] == {
        "value": 2, "max": 4, "prompt_id": "p-1", "node": "3",
    }  # fmt: skip
    assert frames(JobAccepted("j"), "p-1") == [] and frames(JobQueued("j", 0), "p-1") == [], "ComfyUI sends none"
