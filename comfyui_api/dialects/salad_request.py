"""A Salad-shaped POST /prompt body turned into one `JobRequest`, validated at the edge (every problem a 4xx naming
its field), and the 202 body of a job answered at once. No framework import, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.dialects.salad_storage import prompt_storage_fields
from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.model import JobRequest
from comfyui_api.settings import JobSettings
from comfyui_api.storage.registry import StorageRegistry

MAX_METADATA_BYTES = 16 * 1024  # kept on the record and sent in every webhook and event: small on purpose
MAX_INPUT_DEPTH = 32  # input values are links ([id, index]), scalars or small lists: deep nesting is an attack
# Never echoed in a 202.
_NOT_ECHOED = frozenset({"credentials"})


def job_timeout_s(requested_s: float | None, settings: JobSettings) -> float:
    """The request's timeout_s, or the server default; above PROMPT_MAX_TIMEOUT_S is a 400 naming the field."""
    if requested_s is None:
        return settings.default_timeout_s
    if requested_s > settings.max_timeout_s:
        raise InvalidRequest(f"timeout_s may be at most {settings.max_timeout_s:g}", field="timeout_s")
    return requested_s


def _depth(value: Any, limit: int) -> int:
    """How deeply lists and objects nest in `value`, counted up to `limit + 1` (iteratively: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list) and depth < limit + 1:
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            deepest = max(deepest, depth + 1)
    return deepest


def check_graph(graph: Mapping[str, Any], *, max_nodes: int = 10_000) -> None:
    """The shape ComfyUI needs to answer with node_errors rather than fail outright: nodes are objects with a string
    `class_type` and an object `inputs`, within bounds (node count, nesting of input values). Everything else about
    the graph is ComfyUI's to judge."""
    if not graph:
        raise InvalidRequest("prompt must contain at least one node", field="prompt")
    if len(graph) > max_nodes:
        raise InvalidRequest(f"prompt may have at most {max_nodes} nodes (MAX_GRAPH_NODES)", field="prompt")
    for node_id, node in graph.items():
        if not isinstance(node, dict):
            raise InvalidRequest("each node must be an object", field=f"prompt.{node_id}")
        if "class_type" in node and not isinstance(node["class_type"], str):
            raise InvalidRequest("class_type must be a string", field=f"prompt.{node_id}.class_type")
        if "inputs" in node and not isinstance(node["inputs"], dict):
            raise InvalidRequest("inputs must be an object", field=f"prompt.{node_id}.inputs")
        for name, value in (node.get("inputs") or {}).items():
            if _depth(value, MAX_INPUT_DEPTH) > MAX_INPUT_DEPTH:
                raise InvalidRequest(
                    f"an input value may nest lists and objects at most {MAX_INPUT_DEPTH} deep",
                    field=f"prompt.{node_id}.inputs.{name}",
                )


def check_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    if metadata is not None and len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata may be at most {MAX_METADATA_BYTES} bytes as JSON", field="metadata")
    return metadata


def webhook_url(value: str | None, field: str) -> str | None:
    """`value` stripped, or InvalidRequest naming `field` unless it is an http(s) URL (the outbound guard checks
    where it leads when the job is submitted)."""
    if value is None:
        return None
    url = value.strip()
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise InvalidRequest(f"{field} must be an http:// or https:// URL", field=field)
    return url


def to_job_request(
    body: PromptRequest, settings: JobSettings, storage: StorageRegistry | None = None, *, source: str = "http"
) -> JobRequest:
    """The job a POST /prompt body asks for (also a workflow endpoint's, whose `prompt` was built from `input`;
    `source`: the front door, when another takes the same body)."""
    check_graph(body.prompt, max_nodes=settings.max_graph_nodes)
    stored = prompt_storage_fields(body, storage)
    v2_url = webhook_url(body.webhook_v2, "webhook_v2")
    v1_url = webhook_url(body.webhook, "webhook")
    return JobRequest(
        id=body.id,
        graph=body.prompt,
        timeout_s=job_timeout_s(body.timeout_s, settings),
        webhook_v2_url=v2_url,
        webhook_v1_url=v1_url,
        run_async=stored.run_async or body.run_async or v2_url is not None or v1_url is not None,
        cancel_on_disconnect=body.cancel_on_disconnect,
        metadata=check_metadata(body.metadata),
        **stored.job_fields(),
        source=source,
    )


def is_async(job: JobRequest) -> bool:
    """Whether the job is answered 202 at once (then polled, streamed, or reported by webhook or upload)."""
    return job.run_async or job.webhook_v2_url is not None or job.webhook_v1_url is not None


def accepted_body(body: PromptRequest, job_path: str) -> dict[str, Any]:
    """The 202 of an async job: the request's fields echoed as Salad's does (never credentials), `status: "ok"`,
    and where to follow the job."""
    echoed = {
        key: value
        for key, value in msgspec.to_builtins(body).items()
        if key not in _NOT_ECHOED and value is not None and value is not False
    }
    return {**echoed, "id": body.id, "status": "ok", "job": job_path}
