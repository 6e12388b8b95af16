"""The AMQP protocol's wire shapes: which input queue an instance takes (every rule, first match wins), the
registry's GPU type, the envelope, and which job events become stream or result events under which routing key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from comfyui_api.dialects.amqp import envelope, error_event, gpu_type, input_queue, wire_event
from comfyui_api.errors import InvalidRequest, JobCancelled, WorkflowRejected
from comfyui_api.jobs.model import (
    JobCompleted,
    JobQueued,
    JobResult,
    JobStarted,
    NodeExecuting,
    NodesCached,
    NodeStates,
    OutputFile,
    OutputReady,
    PreviewProduced,
    ProgressUpdated,
    Stats,
)


@pytest.mark.parametrize(
    ("dedicated", "workflow", "free", "vram", "name", "shared"),
    [
        ("gpu-7", "sdxl", True, "40G", "q.instance.gpu-7", False),
        (None, "sdxl", True, "40G", "q.workflow.sdxl", False),
        (None, None, True, "40G", "q.gpu.free", False),
        (None, None, False, "40G", "q.gpu.40g", True),
        (None, None, False, "70G", "q.gpu.70g", True),
        (None, None, False, None, "q.gpu.20g", True),
    ],
)
def test_the_first_matching_rule_names_the_input_queue(
    dedicated: str | None, workflow: str | None, free: bool, vram: str | None, name: str, shared: bool
) -> None:
    choice = input_queue(dedicated_id=dedicated, workflow_id=workflow, is_free=free, gpu_vram=vram)
    assert (choice.name, choice.shared) == (name, shared)


def test_gpu_types_and_the_envelope() -> None:
    assert [gpu_type(v) for v in ("20G", "40g", "70G", "8G", None)] == [1, 2, 3, 0, 0]
    before = int(time.time() * 1000)
    wrapped = envelope("t1", "progress", {"value": 1}, {"user": "ann"})
    assert wrapped.pop("timestamp") >= before
    assert wrapped == {
        "protocol_version": "1.0",
        "task_id": "t1",
        "event_type": "progress",
        "data": {"value": 1},
        "metadata": {"user": "ann"},
    }


def test_job_events_map_to_stream_and_result_events() -> None:
    output = OutputFile("9", "image", "a.png", "", "output", "image/png", 3, path=Path("/nowhere"), url="s3://b/a.png")
    cases = [
        (JobStarted("t"), "event.result.execution_start", {"prompt_id": "p"}),
        (NodeExecuting("t", "3", "KSampler"), "event.stream.executing", {"node": "3", "class_type": "KSampler"}),
        (ProgressUpdated("t", "3", 2, 4, 37.5), "event.stream.progress", {"value": 2, "max": 4, "percent": 37.5}),
        (PreviewProduced("t", "3", "image/png", b"\x89P"), "event.stream.binary_preview", {"data": "iVA="}),
        (OutputReady("t", output), "event.result.executed", {"node": "9", "output": {"filename": "a.png"}}),
        (JobQueued("t", 2), "event.stream.status", {"status": "queued", "queue_position": 2, "prompt_id": "p"}),
        (NodesCached("t", ("4", "6")), "event.result.execution_cached", {"nodes": ["4", "6"], "prompt_id": "p"}),
        (
            NodeStates("t", {"3": {"value": 2, "max": 4, "state": "running"}}),
            "event.stream.progress_state",
            {"nodes": {"3": {"value": 2, "max": 4, "state": "running"}}},
        ),
    ]
    for event, key, expected in cases:
        wire = wire_event(event, "p")
        assert wire is not None, event
        assert wire.routing_key == key
        for name, value in expected.items():
            got = wire.data[name]
            assert (got.items() >= value.items()) if isinstance(value, dict) else got == value, (key, name)
    assert wire_event(JobCompleted("t", JobResult("t", {}, [], [], Stats())), "p") is None, "the worker builds it"


def test_errors_become_execution_error_or_interrupted() -> None:
    bad = error_event(InvalidRequest("expected `object`", field="prompt"))
    assert (bad.routing_key, bad.data["type"], bad.data["field"]) == (
        "event.result.execution_error",
        "invalid_request",
        "prompt",
    )
    rejected = error_event(WorkflowRejected("no", comfy_error={}, node_errors={"3": {"errors": []}}))
    assert rejected.data["node_errors"] == {"3": {"errors": []}}
    stopped = error_event(JobCancelled("cancelled by the caller"))
    assert stopped.routing_key == "event.result.execution_interrupted"
    assert stopped.persistent
