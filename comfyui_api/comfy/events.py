"""The one websocket to ComfyUI's /ws: handshake, reconnect with backoff, idle watchdog, routing to subscriptions.

Message types live in `comfy/messages.py` and are re-exported here. Nothing here knows about jobs or HTTP routes;
a `prompt_id` is ComfyUI's id for a queued graph.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import random
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from comfyui_api.comfy.messages import (
    STREAM_MESSAGES,
    ComfyExited,
    ComfyMessage,
    ComfyStalled,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Preview,
    Progress,
    ProgressState,
    StatusMessage,
    StreamDisconnected,
    StreamIdle,
    StreamReconnected,
    UnknownMessage,
    message_prompt_id,
    parse_binary_frame,
    parse_message,
    parse_text_frame,
)
from comfyui_api.comfy.subscription import (
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_PREVIEW_BYTES,
    Subscription,
    SubscriptionClosed,
)

__all__ = [
    "ComfyEventStream",
    "ComfyExited",
    "ComfyMessage",
    "Executed",
    "Executing",
    "ExecutionCached",
    "ExecutionError",
    "ExecutionInterrupted",
    "ExecutionStart",
    "ExecutionSuccess",
    "FeatureFlags",
    "Preview",
    "Progress",
    "ProgressState",
    "StatusMessage",
    "StreamDisconnected",
    "StreamIdle",
    "StreamReconnected",
    "Subscription",
    "SubscriptionClosed",
    "UnknownMessage",
    "message_prompt_id",
    "parse_binary_frame",
    "parse_message",
    "parse_text_frame",
]

logger = logging.getLogger(__name__)

FEATURE_FLAGS_FRAME = json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
# SaveImageWebsocket sends whole images as single frames; websockets' default 1 MiB limit would cut the socket.
MAX_FRAME_BYTES = 256 * 1024 * 1024
# Pause after a drop before reusing the clientId, so ComfyUI's cleanup of the old socket runs first (PROTOCOL §7.1).
RECONNECT_PAUSE_S = 0.25
CLOSE_TIMEOUT_S = 2.0
TRACE_TEXT_CHARS = 2000  # WEBSOCKET_TRACE: a text frame longer than this is cut in the log
# ComfyUI is a local service: never route it through an environment proxy. websockets < 15 knows no proxies and
# rejects the argument, so pass it only where it exists.
_NO_PROXY: dict[str, Any] = {"proxy": None} if "proxy" in inspect.signature(connect.__init__).parameters else {}


class ComfyEventStream:
    """One websocket per ComfyUI, shared by every job, with per-prompt routing.

    The clientId stays the same across reconnects: ComfyUI routes a prompt's frames to the socket registered
    under the client_id the prompt was queued with, so a fresh id would orphan every prompt in flight. ComfyUI
    forgets a clientId when *any* socket registered under it closes (PROTOCOL §7.1), so the old socket is always
    closed, then a short pause, before the new one connects.

    Subscribe to a prompt BEFORE queueing it, so its first frames cannot be missed.

    After a drop it reconnects for as long as it runs, pausing up to `max_backoff_s` between attempts; meanwhile
    subscribers hear StreamDisconnected and ask /history. With `give_up_after` > 0, that many failed attempts in a
    row publish ComfyStalled once per outage, which fails the jobs in flight (the attempts go on, for later jobs).
    `trace` logs every frame.
    """

    def __init__(
        self,
        ws_url: str,
        client_id: str,
        *,
        idle_timeout_s: float,
        connect_timeout_s: float = 10.0,
        max_backoff_s: float = 10.0,
        pong_timeout_s: float | None = None,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
        max_items: int = DEFAULT_MAX_ITEMS,
        max_preview_bytes: int = DEFAULT_MAX_PREVIEW_BYTES,
        give_up_after: int = 0,
        trace: bool = False,
    ):
        separator = "&" if "?" in ws_url else "?"
        self._url = f"{ws_url}{separator}clientId={quote(client_id, safe='')}"
        self._client_id = client_id
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_backoff_s = max_backoff_s
        self._pong_timeout_s = pong_timeout_s if pong_timeout_s is not None else min(idle_timeout_s, 10.0)
        self._close_timeout_s = close_timeout_s
        self._max_items = max_items
        self._max_preview_bytes = max_preview_bytes
        self._give_up_after = give_up_after
        self._trace = trace
        self._by_prompt: dict[str, set[Subscription]] = {}
        self._all: set[Subscription] = set()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._connected = asyncio.Event()
        self._stopping = False
        self._connection_count = 0
        self._last_notice_s = 0.0
        self._executing_prompt_id: str | None = None
        self._executing_node: str | None = None
        self._last_frame_s = 0.0  # loop time of the last frame from ComfyUI (or of the last connect)

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def client_id(self) -> str:
        return self._client_id

    @property
    def watching(self) -> bool:
        """Whether some prompt's frames are awaited (a job of ours is queued or running in ComfyUI)."""
        return bool(self._by_prompt)

    def quiet_s(self) -> float:
        """Seconds since ComfyUI last sent a frame (or since the socket connected)."""
        return asyncio.get_running_loop().time() - self._last_frame_s

    @property
    def connection_count(self) -> int:
        """How many times a socket was opened (1 after the first connect, +1 per reconnect)."""
        return self._connection_count

    async def start(self) -> None:
        """Start the connection loop; waits up to connect_timeout_s for the first socket, then keeps trying."""
        if self._task is not None:
            return
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="comfyui-event-stream")
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                await self._connected.wait()
        except TimeoutError:
            logger.warning("ComfyUI websocket not connected after %.1fs; still trying", self._connect_timeout_s)

    async def wait_connected(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close the socket, tell every subscription, and close them all."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.publish_stream_event(StreamDisconnected("stopped"))
        for sub in [*self._all, *(s for subs in self._by_prompt.values() for s in subs)]:
            sub.close()

    def reconnect_now(self) -> None:
        """Cut a reconnect backoff short (e.g. ComfyUI was just restarted and answers again)."""
        self._wake.set()

    def subscribe(self, prompt_id: str) -> Subscription:
        """Messages of one prompt plus stream-level ones. Close it when done."""
        sub = self._new_subscription(prompt_id)
        self._by_prompt.setdefault(prompt_id, set()).add(sub)
        return sub

    def subscribe_all(self) -> Subscription:
        """Every message, including `status` (for system events and progress broadcasts)."""
        sub = self._new_subscription(None)
        self._all.add(sub)
        return sub

    def _new_subscription(self, prompt_id: str | None) -> Subscription:
        sub = Subscription(
            prompt_id,
            on_close=self._unsubscribe,
            max_items=self._max_items,
            max_preview_bytes=self._max_preview_bytes,
        )
        if not self.connected:
            sub.deliver(StreamDisconnected("not connected"))
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.prompt_id is None:
            self._all.discard(sub)
            return
        subs = self._by_prompt.get(sub.prompt_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._by_prompt[sub.prompt_id]

    def publish_stream_event(self, message: ComfyMessage) -> None:
        """Deliver a message to every subscription (e.g. ComfyExited from the process supervisor)."""
        for sub in list(self._all):
            sub.deliver(message)
        for subs in list(self._by_prompt.values()):
            for sub in list(subs):
                sub.deliver(message)

    def dispatch(self, message: ComfyMessage) -> None:
        """Route one message: stream-level to all, status to subscribe_all only, the rest by prompt_id."""
        if isinstance(message, STREAM_MESSAGES):
            self.publish_stream_event(message)
            return
        prompt_id = message_prompt_id(message)
        if prompt_id is not None and not isinstance(message, StatusMessage):
            for sub in list(self._by_prompt.get(prompt_id, ())):
                sub.deliver(message)
        for sub in list(self._all):
            sub.deliver(message)

    # -- connection loop ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                ws = await connect(
                    self._url,
                    open_timeout=self._connect_timeout_s,
                    close_timeout=self._close_timeout_s,
                    ping_interval=None,  # the idle watchdog pings only when the socket is quiet
                    max_size=MAX_FRAME_BYTES,
                    compression=None,  # previews are already compressed images; deflate only costs CPU
                    **_NO_PROXY,
                )
            except Exception as exc:  # task boundary: this loop must outlive any connect failure
                failures += 1
                self._notice_while_down(f"connect failed: {exc!r}")
                if failures == self._give_up_after and self._connection_count > 0:
                    self._give_up(failures, exc)
                if await self._backoff(failures):
                    failures = 0
                continue
            failures = 0
            reason = await self._serve(ws)
            if self._stopping:
                return
            logger.warning("ComfyUI websocket lost (%s); reconnecting", reason)
            self._last_notice_s = asyncio.get_running_loop().time()
            self.dispatch(StreamDisconnected(reason))
            await asyncio.sleep(RECONNECT_PAUSE_S)

    async def _backoff(self, failures: int) -> bool:
        """Sleep before the next connect attempt; True when woken early by reconnect_now()."""
        delay_s = min(self._max_backoff_s, 0.25 * 2 ** min(failures, 16)) * random.uniform(0.8, 1.0)
        try:
            async with asyncio.timeout(delay_s):
                await self._wake.wait()
        except TimeoutError:
            return False
        finally:
            self._wake.clear()
        return True

    def _give_up(self, failures: int, exc: Exception) -> None:
        reason = f"the websocket could not reconnect in {failures} attempts ({exc!r}; WEBSOCKET_RECONNECT_ATTEMPTS)"
        logger.error("ComfyUI is unreachable: %s; failing the jobs in flight", reason)
        self.publish_stream_event(ComfyStalled(self.quiet_s(), reason))

    def _notice_while_down(self, reason: str) -> None:
        """While disconnected, remind subscribers every idle_timeout_s so they keep checking /history."""
        now_s = asyncio.get_running_loop().time()
        if now_s - self._last_notice_s >= self._idle_timeout_s:
            self._last_notice_s = now_s
            logger.warning("ComfyUI websocket still down: %s", reason)
            self.dispatch(StreamDisconnected(reason))

    async def _serve(self, ws: ClientConnection) -> str:
        """Run one connected socket until it drops; returns why."""
        try:
            await ws.send(FEATURE_FLAGS_FRAME)
            self._ws = ws
            self._wake.clear()
            self._connection_count += 1
            self._last_frame_s = asyncio.get_running_loop().time()
            self._connected.set()
            logger.info("ComfyUI websocket connected (connection %d)", self._connection_count)
            if self._connection_count > 1:
                self.dispatch(StreamReconnected())
            return await self._read(ws)
        except ConnectionClosed as exc:
            return _close_reason(exc)
        finally:
            self._ws = None
            self._connected.clear()
            self._executing_prompt_id = self._executing_node = None
            await ws.close()

    async def _read(self, ws: ClientConnection) -> str:
        loop = asyncio.get_running_loop()
        quiet_since_s = loop.time()
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout_s):
                    frame = await ws.recv()
            except TimeoutError:
                if not await self._answers_ping(ws):
                    return f"no pong within {self._pong_timeout_s:g}s"
                # Alive but quiet: a frame may still have been lost, so let subscribers check /history.
                self.dispatch(StreamIdle(idle_s=loop.time() - quiet_since_s))
                continue
            except ConnectionClosed as exc:
                return _close_reason(exc)
            quiet_since_s = loop.time()
            self._handle_frame(frame)

    async def _answers_ping(self, ws: ClientConnection) -> bool:
        try:
            pong = await ws.ping()
            async with asyncio.timeout(self._pong_timeout_s):
                await pong
        except (TimeoutError, ConnectionClosed):
            return False
        return True

    def _handle_frame(self, frame: str | bytes) -> None:
        self._last_frame_s = asyncio.get_running_loop().time()
        if self._trace:
            _trace(frame)
        if isinstance(frame, bytes):
            preview = parse_binary_frame(frame)
            if preview is None:
                return
            if preview.prompt_id is None:
                # Type 1 frames carry no ids: they belong to whatever is executing right now.
                preview = dataclasses.replace(
                    preview,
                    prompt_id=self._executing_prompt_id,
                    node_id=preview.node_id or self._executing_node,
                )
            self.dispatch(preview)
            return
        message = parse_text_frame(frame)
        self._track_executing(message)
        self.dispatch(message)

    def _track_executing(self, message: ComfyMessage) -> None:
        if isinstance(message, ExecutionStart):
            self._executing_prompt_id, self._executing_node = message.prompt_id, None
        elif isinstance(message, Executing | Progress) and message.node is not None:
            self._executing_prompt_id = message.prompt_id or self._executing_prompt_id
            self._executing_node = message.node
        elif message.is_terminal and message_prompt_id(message) == self._executing_prompt_id:
            self._executing_prompt_id = self._executing_node = None


def _trace(frame: str | bytes) -> None:
    """WEBSOCKET_TRACE: one log line per frame (text up to 2000 characters; binary as its type and size)."""
    if isinstance(frame, bytes):
        kind = int.from_bytes(frame[:4], "big") if len(frame) >= 4 else None
        logger.info("ComfyUI websocket frame: binary, type %s, %d bytes", kind, len(frame))
    else:
        shown = frame if len(frame) <= TRACE_TEXT_CHARS else f"{frame[:TRACE_TEXT_CHARS]}... ({len(frame)} chars)"
        logger.info("ComfyUI websocket frame: %s", shown)


def _close_reason(exc: ConnectionClosed) -> str:
    if exc.rcvd is not None:
        return f"closed by ComfyUI (code {exc.rcvd.code}{', ' + exc.rcvd.reason if exc.rcvd.reason else ''})"
    if exc.sent is not None:
        return f"closed (code {exc.sent.code}{', ' + exc.sent.reason if exc.sent.reason else ''})"
    return "connection lost"
