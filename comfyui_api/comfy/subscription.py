"""One consumer's bounded inbox of ComfyUI messages, filled by the event stream.

Overflow drops the oldest lossy messages (progress, previews, status) and never a terminal or stream-level one.
No I/O here and no knowledge of jobs; the stream in `comfy/events.py` decides what goes into which inbox.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

from comfyui_api.comfy.messages import (
    STREAM_MESSAGES,
    ComfyMessage,
    Preview,
    Progress,
    ProgressState,
    StatusMessage,
)
from comfyui_api.errors import ComfyUnavailable

DEFAULT_MAX_ITEMS = 1000
# Previews can be full-size images (SaveImageWebsocket), so their bytes are bounded separately.
DEFAULT_MAX_PREVIEW_BYTES = 64 * 1024 * 1024

_LOSSY = (Progress, ProgressState, Preview, StatusMessage)


class SubscriptionClosed(ComfyUnavailable):
    """`get()` on a subscription that was closed (e.g. the event stream stopped) and has nothing left to deliver."""


def _is_lossy(message: ComfyMessage) -> bool:
    return isinstance(message, _LOSSY)


def _is_precious(message: ComfyMessage) -> bool:
    return message.is_terminal or isinstance(message, STREAM_MESSAGES)


class Subscription:
    """Messages for one prompt (or for everything), in arrival order.

    Use as an async iterator (ends when closed), or `await get(timeout_s)` which raises TimeoutError. Meant for
    one consumer. `close()` unregisters it from the stream; also usable as a (sync) context manager.
    """

    def __init__(
        self,
        prompt_id: str | None,
        *,
        on_close: Callable[[Subscription], None] | None = None,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_preview_bytes: int = DEFAULT_MAX_PREVIEW_BYTES,
    ):
        self.prompt_id = prompt_id
        self._on_close = on_close
        self._max_items = max(1, max_items)
        self._max_preview_bytes = max_preview_bytes
        self._items: deque[ComfyMessage] = deque()
        self._preview_bytes = 0
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped_count = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def deliver(self, message: ComfyMessage) -> None:
        """Queue one message (called by the stream). Ignored once closed."""
        if self._closed:
            return
        if isinstance(message, Preview):
            self._make_preview_room(len(message.data))
        if len(self._items) >= self._max_items and not self._make_room(message):
            self.dropped_count += 1
            return
        self._items.append(message)
        if isinstance(message, Preview):
            self._preview_bytes += len(message.data)
        self._ready.set()

    def _remove_first(self, predicate: Callable[[ComfyMessage], bool]) -> bool:
        for index, queued in enumerate(self._items):
            if predicate(queued):
                del self._items[index]
                if isinstance(queued, Preview):
                    self._preview_bytes -= len(queued.data)
                self.dropped_count += 1
                return True
        return False

    def _make_preview_room(self, size_bytes: int) -> None:
        while self._preview_bytes + size_bytes > self._max_preview_bytes:
            if not self._remove_first(lambda queued: isinstance(queued, Preview)):
                return

    def _make_room(self, incoming: ComfyMessage) -> bool:
        """Free one slot for `incoming`; False means the incoming message is the one to drop."""
        if self._remove_first(_is_lossy):
            return True
        if _is_lossy(incoming):
            return False
        if self._remove_first(lambda queued: not _is_precious(queued)):
            return True
        # Only terminal and stream-level messages are left: exceed the bound rather than lose one (they are few).
        return True

    def get_nowait(self) -> ComfyMessage | None:
        if not self._items:
            return None
        message = self._items.popleft()
        if isinstance(message, Preview):
            self._preview_bytes -= len(message.data)
        return message

    async def get(self, timeout_s: float) -> ComfyMessage:
        """The next message; TimeoutError after `timeout_s`, SubscriptionClosed once closed and drained."""
        async with asyncio.timeout(timeout_s):
            while True:
                message = self.get_nowait()
                if message is not None:
                    return message
                if self._closed:
                    raise SubscriptionClosed(f"subscription for {self.prompt_id or 'all prompts'} is closed")
                self._ready.clear()
                await self._ready.wait()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ComfyMessage:
        while True:
            message = self.get_nowait()
            if message is not None:
                return message
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        """Stop receiving; messages already queued can still be read. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        if self._on_close is not None:
            self._on_close(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
