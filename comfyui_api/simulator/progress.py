"""Per-prompt node progress: the `progress_state` snapshots, `progress` frames and preview routing.

Owns the node states (running/finished, float 0.0/1.0 at start, the node's own ints afterwards) and the
order ComfyUI sends them in: progress_state, [type 4 preview], progress, [type 1 preview].
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from comfyui_api.simulator.hub import PREVIEW_IMAGE_WITH_METADATA, UNENCODED_PREVIEW_IMAGE, SocketHub
from comfyui_api.simulator.nodes.spec import InterruptProcessingError


class PromptProgress:
    """The progress registry of one prompt; frames go to the prompt's client (or everyone without one)."""

    def __init__(self, prompt_id: str, hub: SocketHub) -> None:
        self.prompt_id = prompt_id
        self._hub = hub
        self._nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str) -> dict[str, Any]:
        if node_id not in self._nodes:
            self._nodes[node_id] = {"state": "pending", "value": 0, "max": 1}
        return self._nodes[node_id]

    def _meta(self, node_id: str) -> dict[str, Any]:
        return {
            "node_id": node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": node_id,
            "parent_node_id": None,
            "real_node_id": node_id,
        }

    def _send_state(self) -> None:
        active = {}
        for node_id, entry in self._nodes.items():
            if entry["state"] == "pending":
                continue
            active[node_id] = {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                **self._meta(node_id),
            }
        self._hub.send_sync("progress_state", {"prompt_id": self.prompt_id, "nodes": active}, self._hub.client_id)

    def start(self, node_id: str) -> None:
        self._entry(node_id).update(state="running", value=0.0, max=1.0)
        self._send_state()

    def update(self, node_id: str, value: Any, total: Any, preview: Any = None) -> None:
        self._entry(node_id).update(state="running", value=value, max=total)
        self._send_state()
        if preview is not None and self._hub.supports_preview_metadata(self._hub.client_id):
            self._hub.send_sync(PREVIEW_IMAGE_WITH_METADATA, (preview, self._meta(node_id)), self._hub.client_id)

    def finish(self, node_id: str) -> None:
        entry = self._entry(node_id)
        entry["state"] = "finished"
        entry["value"] = entry["max"]
        self._send_state()


class NodeProgress:
    """What a node's ProgressBar reports through: checks for interrupt, then sends the step."""

    def __init__(self, node_id: str, progress: PromptProgress, hub: SocketHub, interrupted: Callable[[], bool]) -> None:
        self._node_id = node_id
        self._progress = progress
        self._hub = hub
        self._interrupted = interrupted

    def update(self, value: int, total: int, preview: tuple[str, Any, int | None] | None = None) -> None:
        value = min(value, total)
        if self._interrupted():
            raise InterruptProcessingError("Processing interrupted")
        self._progress.update(self._node_id, value, total, preview)
        payload = {"value": value, "max": total, "prompt_id": self._progress.prompt_id, "node": self._node_id}
        self._hub.send_sync("progress", payload, self._hub.client_id)
        if preview is not None and not self._hub.supports_preview_metadata(self._hub.client_id):
            self._hub.send_sync(UNENCODED_PREVIEW_IMAGE, preview, self._hub.client_id)
