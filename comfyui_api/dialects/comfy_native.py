"""ComfyUI's own wire shapes, for clients written for ComfyUI that talk to `/comfyui`: the /prompt answers, a
/history entry built from a job record, /queue, and the /ws frames of a job's events. The prompt id these clients
see is our job id (a uuid4): ComfyUI's own prompt id for the job never leaves the server. No framework, no I/O.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Mapping
from typing import Any

from comfyui_api.errors import ComfyApiError, JobCancelled, WorkflowRejected
from comfyui_api.jobs.model import (
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobStarted,
    NodeExecuting,
    NodesCached,
    NodeStates,
    OutputFile,
    PreviewProduced,
    ProgressUpdated,
)
from comfyui_api.jobs.store import JobRecord

# Binary /ws frames: a big-endian u32 event type first (ComfyUI's protocol.py BinaryEventTypes).
_PREVIEW_IMAGE, _PREVIEW_IMAGE_WITH_METADATA = 1, 4
_IMAGE_TYPES = {"image/jpeg": 1, "image/png": 2}

# The key of ComfyUI's `outputs` (history) and `executed` frames each output kind is reported under.
_OUTPUT_KEYS = {"image": "images", "animated": "images", "video": "images", "audio": "audio", "latent": "latents"}


def accepted(prompt_id: str, number: int) -> dict[str, Any]:
    return {"prompt_id": prompt_id, "number": number, "node_errors": {}}


def rejected(error: ComfyApiError) -> dict[str, Any]:
    """ComfyUI's 400 body: its own `error` and `node_errors` when ComfyUI refused the graph, else ours in its shape."""
    if isinstance(error, WorkflowRejected):
        return {"error": error.details.get("error", {}), "node_errors": error.details.get("node_errors", {})}
    where = {"field": error.field} if error.field else {}
    return {
        "error": {"type": error.kind, "message": error.message, "details": error.field or "", "extra_info": where},
        "node_errors": {},
    }


def output_ref(output: OutputFile) -> dict[str, Any]:
    return {"filename": output.filename, "subfolder": output.subfolder, "type": output.comfy_type}


def node_outputs(outputs: list[OutputFile]) -> dict[str, dict[str, Any]]:
    """`{node_id: {"images": [{filename, subfolder, type}], ...}}` as ComfyUI's history has it."""
    found: dict[str, dict[str, Any]] = {}
    for output in outputs:
        key = _OUTPUT_KEYS.get(output.kind, "files")
        found.setdefault(output.node_id, {}).setdefault(key, []).append(output_ref(output))
    return found


def history_entry(record: JobRecord, number: int) -> dict[str, Any]:
    """A finished job as one entry of ComfyUI's GET /history (an unfinished one has none: the caller answers {})."""
    request = record.request
    outputs = node_outputs(list(record.result.outputs)) if record.result is not None else {}
    if record.status == "completed":
        status = {"status_str": "success", "completed": True, "messages": []}
    else:
        message = record.error.message if record.error is not None else record.status
        status = {
            "status_str": "error",
            "completed": False,
            "messages": [["execution_error", {"prompt_id": record.id, "exception_message": message}]],
        }
    graph = dict(request.graph)
    return {
        "prompt": [number, record.id, graph, {}, sorted(outputs)],
        "outputs": outputs,
        "status": status,
        "meta": {node_id: {"node_id": node_id, "display_node": node_id} for node_id in outputs},
    }


def queue_item(record: JobRecord, number: int) -> list[Any]:
    return [number, record.id, dict(record.request.graph), {}, []]


def status_frame(queue_remaining: int, sid: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return {"type": "status", "data": data}


def preview_frame(event: PreviewProduced, prompt_id: str, *, with_metadata: bool) -> bytes:
    """The binary /ws frame of a preview (or a SaveImageWebsocket image): type 1 (`u32 1, u32 image type, image`)
    for a client that did not negotiate, type 4 (`u32 4, u32 length, metadata JSON, image`) for one that said it
    `supports_preview_metadata`."""
    if not with_metadata:
        return struct.pack(">II", _PREVIEW_IMAGE, _IMAGE_TYPES.get(event.content_type, 1)) + event.data
    metadata = {
        "node_id": event.node_id,
        "prompt_id": prompt_id,
        "display_node_id": event.node_id,
        "parent_node_id": None,
        "real_node_id": event.node_id,
        "image_type": event.content_type,
    }
    encoded = json.dumps(metadata).encode()
    return struct.pack(">II", _PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + event.data


def feature_flags_frame(max_upload_bytes: int) -> dict[str, Any]:
    """The answer to a client's `feature_flags` frame: what this door supports."""
    data = {"supports_preview_metadata": True, "max_upload_size": max_upload_bytes}
    return {"type": "feature_flags", "data": data}


def asks_preview_metadata(message: Any) -> bool | None:
    """For a client's first JSON frame: whether it asks for previews with metadata (None: it is not `feature_flags`,
    so there is nothing to answer)."""
    if not isinstance(message, dict) or message.get("type") != "feature_flags":
        return None
    data = message.get("data")
    return isinstance(data, dict) and data.get("supports_preview_metadata") is True


class JobFrames:
    """The /ws frames ComfyUI would send for one job's events, in its order: `status` when the job is queued,
    `execution_start`, `execution_cached` (always, with the nodes reused, maybe none), `progress_state` snapshots,
    `executing` before each node, `progress` for the steps a node reports, then `executed` for each output node,
    `execution_success` (or `execution_error` / `execution_interrupted`), `status`, `executing` with `node: null`.
    The outputs are announced once the job holds them (ComfyUI's own files are gone by then): a client that reads
    /history or /view on `executed` or at the end of the run finds them. The prompt id is the job's, in every field
    that names one."""

    def __init__(self, prompt_id: str):
        self.prompt_id = prompt_id
        self._cached_due = False  # execution_start sent, execution_cached not yet

    def frames(self, event: JobEvent, queue_remaining: int) -> list[dict[str, Any]]:
        """The frames for the job's next event (none for events ComfyUI has no frame for)."""
        found: list[dict[str, Any]] = []
        data: dict[str, Any]
        if self._cached_due and not isinstance(event, NodesCached):
            found.append(self._cached(()))
        match event:
            case JobAccepted():
                found.append(status_frame(queue_remaining))
            case JobStarted():
                found.append({"type": "execution_start", "data": self._stamped()})
                self._cached_due = True
            case NodesCached(node_ids=node_ids):
                found.append(self._cached(node_ids))
            case NodeStates(nodes=nodes):
                data = {"prompt_id": self.prompt_id, "nodes": self._own(nodes)}
                found.append({"type": "progress_state", "data": data})
            case NodeExecuting(node_id=node_id):
                data = {"node": node_id, "display_node": node_id, "prompt_id": self.prompt_id}
                found.append({"type": "executing", "data": data})
            case ProgressUpdated(node_id=node_id, value=value, max=maximum, reported=True):
                data = {"value": value, "max": maximum, "prompt_id": self.prompt_id, "node": node_id}
                found.append({"type": "progress", "data": data})
            case JobCompleted(result=result):
                for node, output in node_outputs(list(result.outputs)).items():
                    data = {"node": node, "display_node": node, "output": output, "prompt_id": self.prompt_id}
                    found.append({"type": "executed", "data": data})
                found.append({"type": "execution_success", "data": self._stamped()})
                found.extend(self._ended(queue_remaining))
            case JobFailed(error=error):
                found.append(self._failure(error))
                found.extend(self._ended(queue_remaining))
        return found

    def _stamped(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "timestamp": _now_ms()}

    def _cached(self, node_ids: tuple[str, ...]) -> dict[str, Any]:
        self._cached_due = False
        return {"type": "execution_cached", "data": {"nodes": list(node_ids), **self._stamped()}}

    def _own(self, nodes: Mapping[str, Any]) -> dict[str, Any]:
        """ComfyUI's per-node states with its prompt id replaced by the job's."""
        return {
            node_id: {**state, "prompt_id": self.prompt_id} if isinstance(state, Mapping) and "prompt_id" in state
            else state
            for node_id, state in nodes.items()
        }  # fmt: skip

    def _ended(self, queue_remaining: int) -> list[dict[str, Any]]:
        done = {"type": "executing", "data": {"node": None, "prompt_id": self.prompt_id}}
        return [status_frame(queue_remaining), done]

    def _failure(self, error: ComfyApiError) -> dict[str, Any]:
        if isinstance(error, JobCancelled):
            body: dict[str, Any] = {"prompt_id": self.prompt_id, "node_id": None, "node_type": None, "executed": []}
            return {"type": "execution_interrupted", "data": {**body, "timestamp": _now_ms()}}
        details = error.details
        body = {
            "prompt_id": self.prompt_id,
            "node_id": details.get("node_id"),
            "node_type": details.get("node_type"),
            "executed": [],
            "exception_message": details.get("exception_message", error.message),
            "exception_type": details.get("exception_type", error.kind),
            "traceback": details.get("traceback", []),
            "current_inputs": {},
            "current_outputs": [],
            "timestamp": _now_ms(),
        }
        return {"type": "execution_error", "data": body}


def _now_ms() -> int:
    return int(time.time() * 1000)
