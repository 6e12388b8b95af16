"""The prompt queue and history, shared by the HTTP handlers and the execution thread.

Owns ComfyUI's PromptQueue semantics: a heap on `number` (reported raw, not sorted), running items, history
in completion order capped at 10,000, flags for /free. Thread-safe; every change is announced through
`on_change` (which sends the `status` frame). Must not execute prompts.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_HISTORY_ITEMS = 10_000
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

QueueItem = tuple[Any, str, Any, Any, list[str]]


class _HeapEntry:
    """Wraps a queue item so the heap orders on (number, prompt_id, ...) like ComfyUI's tuple compare,
    without crashing when two items tie and their prompts (dicts) would have to be compared."""

    __slots__ = ("item", "seq")

    def __init__(self, item: QueueItem, seq: int) -> None:
        self.item = item
        self.seq = seq

    def __lt__(self, other: _HeapEntry) -> bool:
        mine, theirs = (self.item[0], self.item[1]), (other.item[0], other.item[1])
        try:
            if mine != theirs:
                return bool(mine < theirs)
        except TypeError:
            return self.seq < other.seq
        return self.seq < other.seq


@dataclass(frozen=True)
class ExecutionStatus:
    status_str: str
    completed: bool
    messages: list[Any]


class PromptQueue:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._mutex = threading.RLock()
        self._not_empty = threading.Condition(self._mutex)
        self._heap: list[_HeapEntry] = []
        self._seq = 0
        self._task_counter = 0
        self._running: dict[int, QueueItem] = {}
        self._history: dict[str, dict[str, Any]] = {}
        self._flags: dict[str, Any] = {}

    def put(self, item: QueueItem) -> None:
        with self._mutex:
            self._seq += 1
            heapq.heappush(self._heap, _HeapEntry(item, self._seq))
            self._on_change()
            self._not_empty.notify()

    def get(self, timeout_s: float | None = None) -> tuple[QueueItem, int] | None:
        with self._not_empty:
            if not self._heap:
                self._not_empty.wait(timeout=timeout_s)
                if not self._heap:
                    return None
            item = heapq.heappop(self._heap).item
            item_id = self._task_counter
            self._running[item_id] = copy.deepcopy(item)
            self._task_counter += 1
            self._on_change()
            return item, item_id

    def wake(self) -> None:
        with self._not_empty:
            self._not_empty.notify_all()

    def task_done(self, item_id: int, history_result: dict[str, Any], status: ExecutionStatus | None) -> None:
        with self._mutex:
            prompt = list(self._running.pop(item_id))
            if len(self._history) > MAX_HISTORY_ITEMS:
                self._history.pop(next(iter(self._history)))
            extra = prompt[3]
            if isinstance(extra, dict):
                for key in SENSITIVE_EXTRA_DATA_KEYS:
                    extra.pop(key, None)
            status_dict = None
            if status is not None:
                status_dict = {
                    "status_str": status.status_str,
                    "completed": status.completed,
                    "messages": copy.deepcopy(status.messages),
                }
            entry: dict[str, Any] = {"prompt": prompt, "outputs": {}, "status": status_dict}
            entry.update(history_result)
            self._history[str(prompt[1])] = entry
            self._on_change()

    def current(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """(running, pending) with pending in raw heap order, as GET /queue shows it."""
        with self._mutex:
            return list(self._running.values()), [entry.item for entry in self._heap]

    def running_ids(self) -> list[str]:
        with self._mutex:
            return [item[1] for item in self._running.values()]

    def knows(self, prompt_id: str) -> bool:
        """Whether a prompt with this id is pending, running or in the history."""
        with self._mutex:
            return (
                prompt_id in self._history
                or any(item[1] == prompt_id for item in self._running.values())
                or any(entry.item[1] == prompt_id for entry in self._heap)
            )

    def remaining(self) -> int:
        with self._mutex:
            return len(self._heap) + len(self._running)

    def wipe(self) -> None:
        with self._mutex:
            self._heap = []
            self._on_change()

    def delete(self, prompt_id: Any) -> bool:
        with self._mutex:
            for index, entry in enumerate(self._heap):
                if entry.item[1] == prompt_id:
                    if len(self._heap) == 1:
                        self.wipe()
                    else:
                        self._heap.pop(index)
                        heapq.heapify(self._heap)
                    self._on_change()
                    return True
        return False

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, Any]:
        with self._mutex:
            out: dict[str, Any] = {}
            if offset < 0 and max_items is not None:
                offset = len(self._history) - max_items
            for index, key in enumerate(self._history):
                if index >= offset:
                    out[key] = self._history[key]
                    if max_items is not None and len(out) >= max_items:
                        break
            return copy.deepcopy(out)

    def history_item(self, prompt_id: str) -> dict[str, Any]:
        with self._mutex:
            if prompt_id in self._history:
                return {prompt_id: copy.deepcopy(self._history[prompt_id])}
            return {}

    def wipe_history(self) -> None:
        with self._mutex:
            self._history = {}

    def delete_history(self, prompt_id: Any) -> None:
        with self._mutex, contextlib.suppress(TypeError):  # an unhashable id deletes nothing
            self._history.pop(prompt_id, None)

    def set_flag(self, name: str, value: Any) -> None:
        with self._mutex:
            self._flags[name] = value
            self._not_empty.notify()

    def take_flags(self) -> dict[str, Any]:
        with self._mutex:
            flags, self._flags = self._flags, {}
            return flags
