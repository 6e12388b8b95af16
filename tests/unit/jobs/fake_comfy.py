"""A scripted ComfyUI edge for runner tests: an HTTP-client stand-in and the real `Subscription` inboxes.

Each queued prompt plays a script: a list of frames (or callables producing them) delivered to the prompt's
subscriptions, with the output files written into the output folder as ComfyUI would.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyui_api.comfy import messages as msg
from comfyui_api.comfy.client import QueuedPrompt
from comfyui_api.comfy.features import ComfyFeatures
from comfyui_api.comfy.subscription import Subscription
from comfyui_api.errors import WorkflowRejected

Step = (
    msg.ComfyMessage | Callable[[], object] | float
)  # a frame, a side effect (awaited if it returns an awaitable), or a pause in seconds
Script = Callable[[str, Mapping[str, Any]], list[Step]]


def success_script(output_dir: Path, png: bytes) -> Script:
    """EmptyImage -> SaveImage: frames as a real ComfyUI sends them, the file written before `executed`."""

    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        prefix = graph["9"]["inputs"]["filename_prefix"]
        filename = f"{prefix}_00001_.png"

        def write() -> None:
            (output_dir / filename).write_bytes(png)

        return [
            msg.ExecutionStart(prompt_id, 1000),
            msg.ExecutionCached(prompt_id, ()),
            msg.Executing(prompt_id, "1"),
            msg.Progress(prompt_id, "1", 1, 2),
            msg.Executing(prompt_id, "9"),
            write,
            msg.Executed(prompt_id, "9", {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}),
            msg.ExecutionSuccess(prompt_id, 1500),
            msg.Executing(prompt_id, None),
        ]

    return script


@dataclass
class FakeEvents:
    subscriptions: dict[str, list[Subscription]] = field(default_factory=dict)

    def subscribe(self, prompt_id: str) -> Subscription:
        sub = Subscription(prompt_id, on_close=lambda s: self.subscriptions[prompt_id].remove(s))
        self.subscriptions.setdefault(prompt_id, []).append(sub)
        return sub

    def deliver(self, prompt_id: str, message: msg.ComfyMessage) -> None:
        for sub in list(self.subscriptions.get(prompt_id, [])):
            sub.deliver(message)

    def broadcast(self, message: msg.ComfyMessage) -> None:
        for subs in list(self.subscriptions.values()):
            for sub in list(subs):
                sub.deliver(message)


class FakeClient:
    """Records calls; plays the script of each queued prompt in a background task."""

    def __init__(self, events: FakeEvents, script: Script):
        self.events = events
        self.script = script
        self.queued: dict[str, Mapping[str, Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.positions: dict[str, int] = {}
        self.deleted: list[str] = []
        self.interrupted: list[str | None] = []
        self.reject: WorkflowRejected | None = None
        self.view_dir: Path | None = None  # set: GET /view serves this folder (outputs not co-located)
        self.delivered: list[msg.ComfyMessage] = []
        self.downloads: list[tuple[str, type[msg.ComfyMessage]]] = []  # file, and the last frame delivered before
        self._tasks: set[asyncio.Task[None]] = set()

    async def queue_prompt(
        self,
        graph: Mapping[str, Any],
        *,
        prompt_id: str,
        client_id: str | None,
        front: bool = False,
        extra_data: Mapping[str, Any] | None = None,
    ) -> QueuedPrompt:
        if self.reject is not None:
            raise self.reject
        self.queued[prompt_id] = graph
        self.positions[prompt_id] = 0
        task = asyncio.create_task(self._play(prompt_id, self.script(prompt_id, graph)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return QueuedPrompt(prompt_id, len(self.queued), {})

    async def _play(self, prompt_id: str, steps: list[Step]) -> None:
        for step in steps:
            await asyncio.sleep(0)
            if isinstance(step, int | float):
                await asyncio.sleep(step)
            elif isinstance(step, msg.ComfyMessage):
                self.delivered.append(step)
                self.events.deliver(prompt_id, step)
            elif inspect.isawaitable(outcome := step()):
                await outcome

    async def settle(self) -> None:
        """Wait until every script has played to its end."""
        await asyncio.gather(*self._tasks)

    async def get_history(self, prompt_id: str) -> dict[str, Any] | None:
        return self.history.get(prompt_id)

    async def queue_position(self, prompt_id: str) -> int | None:
        return self.positions.get(prompt_id)

    async def delete_from_queue(self, prompt_ids: list[str]) -> None:
        self.deleted.extend(prompt_ids)

    async def interrupt(self, prompt_id: str | None = None) -> None:
        self.interrupted.append(prompt_id)
        if prompt_id is not None:
            self.positions.pop(prompt_id, None)  # stops at once: it leaves the queue, as ComfyUI's does when it stops

    async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int:
        if self.view_dir is None:
            raise AssertionError("outputs are co-located in these tests")
        self.downloads.append((filename, type(self.delivered[-1])))
        content = await asyncio.to_thread((self.view_dir / subfolder / filename).read_bytes)
        await asyncio.to_thread(dest.write_bytes, content)
        return len(content)


class FakeInstance:
    def __init__(self, client: FakeClient, events: FakeEvents):
        self.client = client
        self.events = events
        self.client_id = "test-client"
        self.is_ready = True
        self.phase = "ready"
        self.start_count = 1
        self.features = ComfyFeatures(version="0.3.64")
