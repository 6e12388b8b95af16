"""System events (SYSTEM_WEBHOOK_URL / SYSTEM_WEBHOOK_EVENTS): ComfyUI's websocket events and our storage events,
filtered, re-keyed to our job ids, batched per flush window and POSTed signed, one Salad-shaped body per event:
`{"event": "comfy.<name>" | "storage.<name>", "data": {...}, "metadata": {SYSTEM_META_*}}`.

Public surface of `SystemEventPublisher(settings.webhooks, job_id_for=...)`: `start()`, `publish(event_type, data)`
(never blocks, never raises), `await flush()`, `await aclose(timeout_s)`, and `send_to(sink)` for another
destination when SYSTEM_WEBHOOK_URL is unset. Progress events are coalesced to the latest
per prompt and node within a window; the buffer is bounded and drops its oldest event (counted, logged) when full.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from comfyui_api.delivery.sender import HttpClientFactory, RetryPolicy, Sleep, WebhookSender, default_http_client
from comfyui_api.delivery.signing import WebhookSigner
from comfyui_api.settings import SYSTEM_EVENT_NAMES, WebhookSettings

logger = logging.getLogger(__name__)

STORAGE_EVENTS = frozenset(name for name in SYSTEM_EVENT_NAMES if name.startswith("storage."))
COMFY_EVENTS = frozenset(SYSTEM_EVENT_NAMES) - STORAGE_EVENTS

SystemEventSink = Callable[[str, dict[str, Any], dict[str, str]], Awaitable[bool]]
"""Another destination for system events (name, data, metadata) -> delivered; used when SYSTEM_WEBHOOK_URL is unset
(the AMQP consumer publishes them to its exchange)."""

JobIdFor = Callable[[str], str | None]
"""ComfyUI prompt_id -> our job id (None: not one of ours; the prompt_id is then passed on unchanged)."""


def qualified_name(event_type: str) -> str | None:
    """`progress` -> `comfy.progress`; `file_uploaded` or `storage.file_uploaded` -> `storage.file_uploaded`."""
    if event_type in COMFY_EVENTS:
        return f"comfy.{event_type}"
    storage = event_type if event_type.startswith("storage.") else f"storage.{event_type}"
    return storage if storage in STORAGE_EVENTS else None


def _setting_name(qualified: str) -> str:
    """The name SYSTEM_WEBHOOK_EVENTS uses: ComfyUI's bare name, or the storage event's dotted name."""
    return qualified.removeprefix("comfy.")


@dataclass(frozen=True)
class _Pending:
    event: str
    data: dict[str, Any]


class SystemEventPublisher:
    def __init__(
        self,
        settings: WebhookSettings,
        *,
        job_id_for: JobIdFor,
        http_client_factory: HttpClientFactory = default_http_client,
        max_buffered_events: int = 1000,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ):
        self._url = settings.system_url
        self._wanted = frozenset(settings.system_events)
        self._metadata = dict(settings.system_meta)
        self._interval_s = settings.system_flush_interval_s
        self._job_id_for = job_id_for
        self._max_buffered = max(1, max_buffered_events)
        policy = RetryPolicy(
            attempts=settings.retries, timeout_s=settings.timeout_s, backoff_base_s=settings.backoff_base_s
        )
        signer = WebhookSigner(settings.secret) if settings.secret else None
        self._sender = WebhookSender(
            policy,
            signer=signer,
            http_client_factory=http_client_factory,
            clock=clock,
            sleep=sleep,
            draw=draw,
            success_log_level=logging.DEBUG,  # one line per forwarded event would drown the log
        )
        self._buffer: OrderedDict[Hashable, _Pending] = OrderedDict()
        self._sequence = itertools.count()
        self._flush_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._sink: SystemEventSink | None = None
        self.dropped_events = 0
        self._dropped_unreported = 0

    @property
    def enabled(self) -> bool:
        return bool((self._url or self._sink) and self._wanted)

    def send_to(self, sink: SystemEventSink) -> None:
        """Deliver to `sink` instead, unless SYSTEM_WEBHOOK_URL is set (the URL wins). Call in the running loop."""
        if self._url is None:
            self._sink = sink
            self.start()

    def wants(self, event_type: str) -> bool:
        """Whether `publish(event_type, ...)` would forward anything (lets a producer skip building the data)."""
        name = qualified_name(event_type)
        return self.enabled and name is not None and _setting_name(name) in self._wanted

    def start(self) -> None:
        """Start the periodic flush (no-op when disabled or already started)."""
        if self.enabled and self._loop_task is None:
            self._loop_task = asyncio.create_task(self._flush_loop(), name="system-events")

    def publish(self, event_type: str, data: Mapping[str, Any]) -> None:
        """Queue one event for the next flush. Never blocks and never raises into the producer."""
        try:
            name = qualified_name(event_type)
            if name is None or not self.enabled or _setting_name(name) not in self._wanted:
                return
            rewritten = self._rewrite_prompt_ids(data)
            self._enqueue(self._coalesce_key(name, rewritten), _Pending(name, rewritten))
        except Exception:  # boundary: a bad event or a failing id mapping must not break the event producer
            logger.exception("system event %r could not be queued", event_type)

    async def flush(self) -> int:
        """Send everything buffered now, in order, one POST per event; returns how many POSTs succeeded."""
        async with self._flush_lock:
            batch = list(self._buffer.values())
            self._buffer.clear()
            self._report_drops()
            delivered = 0
            for pending in batch:
                delivered += await self._send(pending)
            return delivered

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Stop the periodic flush, send what is buffered (bounded by `timeout_s`), close the client."""
        self._stopping.set()
        task, self._loop_task = self._loop_task, None
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                if task is not None:
                    await task
                if self.enabled:
                    await self.flush()
        except TimeoutError:
            logger.warning("system events: gave up sending %d buffered event(s) at shutdown", len(self._buffer))
        finally:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._sender.aclose()

    async def _flush_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval_s):
                    await self._stopping.wait()
            try:
                await self.flush()
            except Exception:  # task boundary: keep forwarding after an unexpected failure
                logger.exception("system events: flush failed")

    def _rewrite_prompt_ids(self, data: Mapping[str, Any]) -> dict[str, Any]:
        rewritten = dict(data)
        prompt_id = rewritten.get("prompt_id")
        if isinstance(prompt_id, str):
            rewritten["prompt_id"] = self._job_id_for(prompt_id) or prompt_id
        nodes = rewritten.get("nodes")
        if isinstance(nodes, Mapping):  # progress_state repeats the prompt_id inside every node entry
            rewritten["nodes"] = {
                key: self._rewrite_prompt_ids(node) if isinstance(node, Mapping) else node
                for key, node in nodes.items()
            }
        return rewritten

    def _coalesce_key(self, name: str, data: Mapping[str, Any]) -> Hashable:
        if name == "comfy.progress":
            return (name, data.get("prompt_id"), data.get("node"))
        if name == "comfy.progress_state":
            return (name, data.get("prompt_id"))  # carries every node of the prompt at once
        return next(self._sequence)

    def _enqueue(self, key: Hashable, pending: _Pending) -> None:
        # A coalesced event moves to the end: it reports the state as of its latest update.
        self._buffer.pop(key, None)
        self._buffer[key] = pending
        while len(self._buffer) > self._max_buffered:
            self._buffer.popitem(last=False)
            self.dropped_events += 1
            self._dropped_unreported += 1

    def _report_drops(self) -> None:
        if self._dropped_unreported:
            logger.warning(
                "system events: dropped %d event(s) because the buffer was full (%d in total)",
                self._dropped_unreported,
                self.dropped_events,
            )
            self._dropped_unreported = 0

    async def _send(self, pending: _Pending) -> int:
        if self._url is None:
            if self._sink is None:
                return 0
            try:
                return int(await self._sink(pending.event, pending.data, self._metadata))
            except Exception:  # boundary: a failing destination must not stop the flush loop
                logger.warning("system event %s not delivered", pending.event, exc_info=True)
                return 0
        body = {"event": pending.event, "data": pending.data, "metadata": self._metadata}
        try:
            encoded = msgspec.json.encode(body)
        except (TypeError, msgspec.EncodeError) as exc:
            logger.error("system event %s skipped: data is not JSON-serialisable (%s)", pending.event, exc)
            return 0
        outcome = await self._sender.post(
            self._url, encoded, msg_id=f"msg_{uuid.uuid4().hex}", what=f"system event {pending.event}"
        )
        return int(outcome.delivered)
