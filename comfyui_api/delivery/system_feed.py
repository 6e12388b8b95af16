"""The ComfyUI side of system events: one `subscribe_all` subscription on the websocket, each message handed to the
`SystemEventPublisher` under ComfyUI's own event name with ComfyUI's own data (the publisher filters, re-keys
prompt ids to job ids, coalesces and sends). Never blocks the event stream: publishing only queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from comfyui_api.comfy.subscription import Subscription
from comfyui_api.delivery.system_events import SystemEventPublisher

log = logging.getLogger(__name__)

_STOP_TIMEOUT_S = 2.0


class AllEventsSource(Protocol):
    def subscribe_all(self) -> Subscription: ...


class ComfyEventFeed:
    """Runs only while the publisher is enabled (SYSTEM_WEBHOOK_URL and SYSTEM_WEBHOOK_EVENTS set)."""

    def __init__(self, events: AllEventsSource, publisher: SystemEventPublisher):
        self._events = events
        self._publisher = publisher
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self._publisher.enabled or self._task is not None:
            return
        self._subscription = self._events.subscribe_all()
        self._task = asyncio.create_task(self._forward(self._subscription), name="system-event-feed")

    async def aclose(self) -> None:
        if self._subscription is not None:
            self._subscription.close()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await task
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forward(self, subscription: Subscription) -> None:
        async for message in subscription:
            name = message.raw_type
            if name and self._publisher.wants(name):
                self._publisher.publish(name, message.raw_data)
