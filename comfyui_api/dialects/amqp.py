"""The AMQP task protocol's wire shapes (the comfyui-api fork's, protocol 1.0): which queue an instance takes tasks
from, the event envelope, routing keys, and how a job's events map to stream (transient) and result (persistent)
events. No broker, no I/O.

    queue     q.instance.<id> | q.workflow.<id> | q.gpu.free | q.gpu.<vram>        (first match wins)
    envelope  {"protocol_version": "1.0", "task_id", "event_type", "timestamp": epoch ms, "data", "metadata"}
    routing   event.stream.<type> (status, progress, progress_state, executing, binary_preview)
              event.result.<type> (execution_start, execution_cached, executed, execution_success,
                                   execution_interrupted, execution_error)
              service.instance.<register | heartbeat | unregister>
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyui_api.errors import ComfyApiError, JobCancelled, WorkflowRejected
from comfyui_api.jobs.model import (
    JobEvent,
    JobQueued,
    JobStarted,
    NodeExecuting,
    NodesCached,
    NodeStates,
    OutputReady,
    PreviewProduced,
    ProgressUpdated,
)

PROTOCOL_VERSION = "1.0"
SHARED_QUEUE_MAX_PRIORITY = 10
_GPU_TYPES = {"20g": 1, "40g": 2, "70g": 3}


@dataclass(frozen=True)
class QueueChoice:
    name: str
    shared: bool  # a q.gpu.* queue other than free: declared with x-max-priority


def input_queue(
    *, dedicated_id: str | None, workflow_id: str | None, is_free: bool, gpu_vram: str | None
) -> QueueChoice:
    """The queue this instance takes tasks from; the first rule that applies wins."""
    if dedicated_id:
        return QueueChoice(f"q.instance.{dedicated_id}", shared=False)
    if workflow_id:
        return QueueChoice(f"q.workflow.{workflow_id}", shared=False)
    if is_free:
        return QueueChoice("q.gpu.free", shared=False)
    return QueueChoice(f"q.gpu.{(gpu_vram or '20G').lower()}", shared=True)


def gpu_type(gpu_vram: str | None) -> int:
    """The registry's `type`: 1 for 20G, 2 for 40G, 3 for 70G (0 when unknown)."""
    return _GPU_TYPES.get((gpu_vram or "").lower(), 0)


def envelope(task_id: str, event_type: str, data: Any, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "protocol_version": PROTOCOL_VERSION,
        "task_id": task_id,
        "event_type": event_type,
        "timestamp": int(time.time() * 1000),
        "data": data,
        "metadata": dict(metadata or {}),
    }


def stream_key(event_type: str) -> str:
    return f"event.stream.{event_type}"


def result_key(event_type: str) -> str:
    return f"event.result.{event_type}"


@dataclass(frozen=True)
class WireEvent:
    """One event to publish: `persistent` for results, transient for stream events."""

    event_type: str
    data: Any
    persistent: bool

    @property
    def routing_key(self) -> str:
        return result_key(self.event_type) if self.persistent else stream_key(self.event_type)


def wire_event(event: JobEvent, prompt_id: str | None) -> WireEvent | None:
    """The protocol's event for a job event, or None when the protocol has none for it. The terminal outcome
    (execution_success / _error / _interrupted) is built by the worker, which owns the answer body."""
    match event:
        case JobQueued(position=position):
            return WireEvent("status", {"prompt_id": prompt_id, "status": "queued", "queue_position": position}, False)
        case JobStarted():
            return WireEvent("execution_start", {"prompt_id": prompt_id}, persistent=True)
        case NodesCached(node_ids=node_ids):
            return WireEvent("execution_cached", {"nodes": list(node_ids), "prompt_id": prompt_id}, persistent=True)
        case NodeStates(nodes=nodes):
            return WireEvent("progress_state", {"nodes": dict(nodes), "prompt_id": prompt_id}, persistent=False)
        case NodeExecuting(node_id=node_id, class_type=class_type):
            return WireEvent("executing", {"node": node_id, "class_type": class_type, "prompt_id": prompt_id}, False)
        case ProgressUpdated(node_id=node_id, value=value, max=maximum, percent=percent):
            data = {"value": value, "max": maximum, "prompt_id": prompt_id, "node": node_id, "percent": percent}
            return WireEvent("progress", data, persistent=False)
        case PreviewProduced(node_id=node_id, content_type=content_type, data=raw):
            data = {"node": node_id, "content_type": content_type, "data": base64.b64encode(raw).decode("ascii")}
            return WireEvent("binary_preview", data, persistent=False)
        case OutputReady(output=output):
            executed = {
                "node": output.node_id,
                "prompt_id": prompt_id,
                "output": {"filename": output.filename, "kind": output.kind, "url": output.url},
            }
            return WireEvent("executed", executed, persistent=True)
    return None


def error_event(error: ComfyApiError) -> WireEvent:
    """execution_interrupted for a cancelled job, else execution_error `{message, stack, type, field?,
    node_errors?}`."""
    if isinstance(error, JobCancelled):
        return WireEvent("execution_interrupted", {"message": error.message, "type": error.kind}, persistent=True)
    data: dict[str, Any] = {
        "message": error.message,
        "stack": str(error.details.get("traceback", "")),
        "type": error.kind,
    }
    if error.field is not None:
        data["field"] = error.field
    if isinstance(error, WorkflowRejected):
        data["node_errors"] = error.node_errors
    return WireEvent("execution_error", data, persistent=True)
