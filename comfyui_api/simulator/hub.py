"""The websocket hub: connected sockets, their negotiated feature flags, and ordered delivery of frames.

Owns routing (one socket per clientId, broadcast when no sid), the thread-safe hand-over from the execution
thread to the event loop, and the binary preview frame formats (type 1 and type 4). Must not know prompts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from io import BytesIO
from typing import Any

from aiohttp import web
from PIL import Image, ImageOps

log = logging.getLogger("comfyui_api.simulator")

PREVIEW_IMAGE = 1
UNENCODED_PREVIEW_IMAGE = 2
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
# A client that stops reading must not stall every other socket: give up on it after this long.
SEND_TIMEOUT_S = 10.0

Event = str | int


def _encode_image(image: Image.Image, image_type: str, max_size: int | None) -> bytes:
    if max_size is not None:
        image = ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)
    buffer = BytesIO()
    image.save(buffer, format=image_type, quality=95, compress_level=1)
    return buffer.getvalue()


def preview_frame(preview: tuple[str, Image.Image, int | None]) -> bytes:
    """Type 1: u32 1, u32 image type (1 JPEG, 2 PNG), image bytes."""
    image_type, image, max_size = preview
    type_number = 2 if image_type == "PNG" else 1
    return struct.pack(">II", PREVIEW_IMAGE, type_number) + _encode_image(image, image_type, max_size)


def preview_with_metadata_frame(preview: tuple[str, Image.Image, int | None], metadata: dict[str, Any]) -> bytes:
    """Type 4: u32 4, u32 length, JSON metadata (with image_type), image bytes."""
    image_type, image, max_size = preview
    meta = dict(metadata)
    meta["image_type"] = "image/png" if image_type == "PNG" else "image/jpeg"
    encoded = json.dumps(meta).encode("utf-8")
    return (
        struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(encoded))
        + encoded
        + _encode_image(image, image_type, max_size)
    )


class SocketHub:
    """All open /ws sockets; frames queued from any thread are sent in order by `publish_loop`."""

    def __init__(self, server_features: dict[str, Any]) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.flags: dict[str, dict[str, Any]] = {}
        self.server_features = server_features
        # The client whose prompt is executing (None when it has no client_id) and its current node.
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._messages: asyncio.Queue[tuple[Event, Any, str | None]] | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._messages = asyncio.Queue()

    def send_sync(self, event: Event, data: Any, sid: str | None = None) -> None:
        """Queue a frame from any thread; `sid=None` broadcasts."""
        if self._loop is None or self._messages is None or self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._messages.put_nowait, (event, data, sid))
        except RuntimeError:
            log.debug("event loop closed; frame %s dropped", event)

    def supports_preview_metadata(self, sid: str | None) -> bool:
        if sid is None or sid not in self.flags:
            return False
        return self.flags[sid].get("feature_flags", {}).get("supports_preview_metadata", False) is True

    async def publish_loop(self) -> None:
        assert self._messages is not None
        while True:
            event, data, sid = await self._messages.get()
            try:
                await self.send(event, data, sid)
            except Exception:  # one bad frame must not stop delivery of the rest
                log.exception("failed to send %s frame", event)

    async def send(self, event: Event, data: Any, sid: str | None = None) -> None:
        if event == UNENCODED_PREVIEW_IMAGE:
            await self._send_bytes(preview_frame(data), sid)
        elif event == PREVIEW_IMAGE_WITH_METADATA:
            preview, metadata = data
            await self._send_bytes(preview_with_metadata_frame(preview, metadata), sid)
        elif isinstance(data, (bytes, bytearray)):
            await self._send_bytes(struct.pack(">I", int(event)) + bytes(data), sid)
        else:
            await self._send_json({"type": event, "data": data}, sid)

    def _targets(self, sid: str | None) -> list[web.WebSocketResponse]:
        if sid is None:
            return list(self.sockets.values())
        socket = self.sockets.get(sid)
        return [socket] if socket is not None else []

    async def _send_json(self, message: dict[str, Any], sid: str | None) -> None:
        text = json.dumps(message)
        for socket in self._targets(sid):
            await self._deliver(socket, socket.send_str(text))

    async def _send_bytes(self, payload: bytes, sid: str | None) -> None:
        for socket in self._targets(sid):
            await self._deliver(socket, socket.send_bytes(payload))

    @staticmethod
    async def _deliver(socket: web.WebSocketResponse, sending: Any) -> None:
        try:
            await asyncio.wait_for(sending, SEND_TIMEOUT_S)
        except TimeoutError:
            log.warning("send error: client not reading for %.0fs, closing its socket", SEND_TIMEOUT_S)
            await socket.close()
        except (ConnectionError, RuntimeError) as err:
            log.warning("send error: %s", err)
