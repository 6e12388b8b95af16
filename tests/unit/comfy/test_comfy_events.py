"""ComfyEventStream against a websocket server on loopback that speaks ComfyUI's /ws dialect (replayed frames)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from comfyui_api.comfy.events import (
    ComfyEventStream,
    ComfyExited,
    ComfyMessage,
    ComfyStalled,
    Executing,
    Preview,
    StatusMessage,
    StreamDisconnected,
    StreamIdle,
    StreamReconnected,
    Subscription,
    SubscriptionClosed,
    UnknownMessage,
)
from tests.unit.comfy.captures import load_capture, needs_captures

WAIT_S = 5.0  # a safety net for a broken test, not a timing assertion


class FakeComfyWs:
    """Accepts /ws?clientId=X, sends the connect status frame, answers the feature_flags handshake."""

    def __init__(self) -> None:
        self.client_ids: list[str] = []
        self.first_frames: list[str | bytes] = []
        self.sockets: list[ServerConnection] = []
        self.previous_closed_on_connect: list[bool] = []
        self.ready: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.server: Server | None = None

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        client_id = parse_qs(urlparse(ws.request.path).query)["clientId"][0]
        if self.sockets:
            self.previous_closed_on_connect.append(self.sockets[-1].state.name == "CLOSED")
        self.client_ids.append(client_id)
        self.sockets.append(ws)
        status = {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}
        await ws.send(json.dumps({"type": "status", "data": status}))
        self.first_frames.append(await ws.recv())
        await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        self.ready.put_nowait(ws)
        await ws.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    async def next_socket(self) -> ServerConnection:
        return await asyncio.wait_for(self.ready.get(), WAIT_S)


@pytest.fixture
async def comfy_ws() -> AsyncIterator[FakeComfyWs]:
    fake = FakeComfyWs()
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        fake.server = server
        yield fake
        for ws in fake.sockets:
            ws.transport.abort()


def make_stream(url: str, **kwargs: Any) -> ComfyEventStream:
    kwargs.setdefault("idle_timeout_s", 30.0)
    kwargs.setdefault("connect_timeout_s", WAIT_S)
    return ComfyEventStream(url, "client-1", **kwargs)


async def drain_until(sub: Subscription, predicate: Any) -> list[ComfyMessage]:
    """Messages up to and including the first one matching `predicate`."""
    seen = []
    while True:
        message = await sub.get(WAIT_S)
        seen.append(message)
        if predicate(message):
            return seen


def load_session(capture: str, name: str) -> dict[str, Any]:
    return load_capture(capture)[name]


def replay_frames(session: dict[str, Any]) -> list[str | bytes]:
    frames: list[str | bytes] = []
    for frame in session["ws"]:
        if "json" in frame:
            frames.append(json.dumps(frame["json"]))
        elif frame.get("event_type") == 1:
            frames.append(struct.pack(">II", 1, frame["image_type"]) + b"image")
        elif frame.get("event_type") == 4:
            metadata = json.dumps(frame["metadata"]).encode()
            frames.append(struct.pack(">II", 4, len(metadata)) + metadata + b"image")
    return frames


async def test_handshake_and_client_id(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url)
    everything = stream.subscribe_all()
    await stream.start()
    try:
        await comfy_ws.next_socket()
        assert stream.connected
        assert comfy_ws.client_ids == ["client-1"]
        assert json.loads(comfy_ws.first_frames[0]) == {
            "type": "feature_flags",
            "data": {"supports_preview_metadata": True},
        }
        messages = await drain_until(everything, lambda m: m.raw_type == "feature_flags")
        assert isinstance(messages[-2], StatusMessage) and messages[-2].sid == "client-1"
    finally:
        await stream.stop()
    assert not stream.connected


@needs_captures
async def test_frames_are_routed_by_prompt_id(comfy_ws: FakeComfyWs) -> None:
    session = load_session("prompt_valid_basic.json", "A_invert_first")
    prompt_id = session["prompt_id"]
    stream = make_stream(comfy_ws.url)
    await stream.start()
    mine, other, everything = stream.subscribe(prompt_id), stream.subscribe("someone-else"), stream.subscribe_all()
    try:
        ws = await comfy_ws.next_socket()
        await drain_until(everything, lambda m: m.raw_type == "feature_flags")
        frames = replay_frames(session)
        for frame in frames:
            await ws.send(frame)
        got = await drain_until(mine, lambda m: isinstance(m, Executing) and m.node is None)
        sent_types = [json.loads(f)["type"] for f in frames if isinstance(f, str)]
        assert [m.raw_type for m in got] == [t for t in sent_types if t != "status"]
        seen_by_all = await drain_until(everything, lambda m: isinstance(m, Executing) and m.node is None)
        assert [m.raw_type for m in seen_by_all] == sent_types
        assert len(other) == 0
    finally:
        await stream.stop()


@needs_captures
async def test_type1_previews_are_attributed_to_the_executing_prompt(comfy_ws: FakeComfyWs) -> None:
    session = load_session("ws_previews_latent2rgb.json", "legacy_client")
    prompt_id = session["prompt_id"]
    stream = make_stream(comfy_ws.url)
    await stream.start()
    sub = stream.subscribe(prompt_id)
    try:
        ws = await comfy_ws.next_socket()
        for frame in replay_frames(session):
            await ws.send(frame)
        got = await drain_until(sub, lambda m: isinstance(m, Executing) and m.node is None)
        previews = [m for m in got if isinstance(m, Preview)]
        assert len(previews) == 3
        assert all(p.prompt_id == prompt_id and p.node_id == "3" for p in previews)
        assert all(p.content_type == "image/jpeg" and p.data == b"image" for p in previews)
    finally:
        await stream.stop()


async def test_type4_previews_and_unknown_messages_route_by_their_prompt_id(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url)
    await stream.start()
    sub = stream.subscribe("p9")
    try:
        ws = await comfy_ws.next_socket()
        metadata = json.dumps({"node_id": "2", "prompt_id": "p9", "image_type": "image/png"}).encode()
        big_image = b"\x89PNG" + bytes(3 * 1024 * 1024)  # larger than websockets' default frame limit
        await ws.send(struct.pack(">II", 4, len(metadata)) + metadata + big_image)
        await ws.send(json.dumps({"type": "custom.text", "data": {"prompt_id": "p9", "text": "hi"}}))
        preview = await sub.get(WAIT_S)
        assert isinstance(preview, Preview)
        assert (preview.prompt_id, preview.node_id, len(preview.data)) == ("p9", "2", len(big_image))
        assert await sub.get(WAIT_S) == UnknownMessage("custom.text", {"prompt_id": "p9", "text": "hi"})
        assert stream.connection_count == 1
    finally:
        await stream.stop()


async def test_reconnects_with_the_same_client_id_after_a_drop(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url)
    await stream.start()
    sub = stream.subscribe("p1")
    try:
        first = await comfy_ws.next_socket()
        await first.close(code=1011, reason="server going away")
        dropped = await sub.get(WAIT_S)
        assert isinstance(dropped, StreamDisconnected) and "1011" in dropped.reason
        assert await sub.get(WAIT_S) == StreamReconnected()
        second = await comfy_ws.next_socket()
        assert comfy_ws.client_ids == ["client-1", "client-1"]
        assert comfy_ws.previous_closed_on_connect == [True]  # PROTOCOL §7.1: old socket gone before the new one
        await second.send(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p1"}}))
        assert await sub.get(WAIT_S) == Executing("p1", None)
        assert stream.connection_count == 2
    finally:
        await stream.stop()


async def test_quiet_socket_gives_idle_notices_without_reconnecting(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url, idle_timeout_s=0.2)
    await stream.start()
    sub = stream.subscribe("p1")
    try:
        await comfy_ws.next_socket()
        notice = await sub.get(WAIT_S)
        assert isinstance(notice, StreamIdle) and notice.idle_s > 0
        assert isinstance(await sub.get(WAIT_S), StreamIdle)  # repeats while quiet
        assert stream.connected and stream.connection_count == 1
    finally:
        await stream.stop()


async def test_dead_socket_is_detected_by_ping_and_replaced(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url, idle_timeout_s=0.2, pong_timeout_s=0.2, close_timeout_s=0.2)
    await stream.start()
    sub = stream.subscribe("p1")
    try:
        first = await comfy_ws.next_socket()
        first.transport.pause_reading()  # a hung peer: pings are never answered
        dropped = await sub.get(WAIT_S)
        assert isinstance(dropped, StreamDisconnected) and not isinstance(dropped, StreamIdle)
        assert "no pong" in dropped.reason
        await comfy_ws.next_socket()
        assert await sub.get(WAIT_S) == StreamReconnected()
    finally:
        await stream.stop()


async def test_reconnect_attempts_give_up_once_per_outage_and_go_on_trying(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url, idle_timeout_s=0.05, max_backoff_s=0.05, give_up_after=3)
    await stream.start()
    sub = stream.subscribe("p1")
    try:
        first = await comfy_ws.next_socket()
        assert comfy_ws.server is not None
        comfy_ws.server.close()  # ComfyUI is gone: nothing listens any more
        await first.close()
        seen = await drain_until(sub, lambda message: isinstance(message, ComfyStalled))
        assert any(isinstance(message, StreamDisconnected) for message in seen[:-1])
        assert "3 attempts" in seen[-1].reason and "WEBSOCKET_RECONNECT_ATTEMPTS" in seen[-1].reason
        later: list[ComfyMessage] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.6):
                while True:
                    later.append(await sub.get(WAIT_S))
        assert later and not any(isinstance(message, ComfyStalled) for message in later)  # once; still trying
        assert not stream.connected
    finally:
        await stream.stop()


async def test_no_give_up_before_the_first_connection_nor_by_default() -> None:
    for give_up_after in (0, 1):
        stream = make_stream(
            "ws://127.0.0.1:9/ws", idle_timeout_s=0.05, max_backoff_s=0.05, give_up_after=give_up_after
        )
        await stream.start()  # never connected: ComfyUI may still be starting
        sub = stream.subscribe("p1")
        try:
            seen: list[ComfyMessage] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.6):
                    while True:
                        seen.append(await sub.get(WAIT_S))
            assert len(seen) >= 2 and all(type(message) is StreamDisconnected for message in seen)
        finally:
            await stream.stop()


async def test_trace_logs_every_frame(comfy_ws: FakeComfyWs, caplog: pytest.LogCaptureFixture) -> None:
    stream = make_stream(comfy_ws.url, trace=True)
    await stream.start()
    sub = stream.subscribe("p1")
    try:
        ws = await comfy_ws.next_socket()
        with caplog.at_level(logging.INFO, logger="comfyui_api.comfy.events"):
            await ws.send(json.dumps({"type": "executing", "data": {"node": "4", "prompt_id": "p1"}}))
            await ws.send(struct.pack(">II", 1, 2) + b"image")
            await ws.send(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p1"}}))
            await drain_until(sub, lambda message: message == Executing("p1", None))
        traced = [record.getMessage() for record in caplog.records if "websocket frame" in record.getMessage()]
        # the fake's greeting (status, feature_flags) may arrive while the log is captured: only this test's frames
        traced = [line for line in traced if '"p1"' in line or "binary" in line]
        assert traced == [
            'ComfyUI websocket frame: {"type": "executing", "data": {"node": "4", "prompt_id": "p1"}}',
            "ComfyUI websocket frame: binary, type 1, 13 bytes",
            'ComfyUI websocket frame: {"type": "executing", "data": {"node": null, "prompt_id": "p1"}}',
        ]
    finally:
        await stream.stop()


async def test_subscriptions_made_while_disconnected_hear_about_it() -> None:
    stream = make_stream("ws://127.0.0.1:9/ws", connect_timeout_s=0.2, idle_timeout_s=0.1, max_backoff_s=0.1)
    await stream.start()  # nothing listens there: start returns and keeps trying in the background
    try:
        sub = stream.subscribe("p1")
        first = await sub.get(WAIT_S)
        assert isinstance(first, StreamDisconnected) and first.reason == "not connected"
        reminder = await sub.get(WAIT_S)  # repeated while down, so waiters keep checking /history
        assert isinstance(reminder, StreamDisconnected) and "connect failed" in reminder.reason
    finally:
        await stream.stop()


async def test_published_stream_events_reach_every_subscription(comfy_ws: FakeComfyWs) -> None:
    stream = make_stream(comfy_ws.url)
    await stream.start()
    await comfy_ws.next_socket()
    a, b, everything = stream.subscribe("a"), stream.subscribe("b"), stream.subscribe_all()
    while everything.get_nowait() is not None:  # connect-time frames
        pass
    stream.publish_stream_event(ComfyExited(-9))
    assert await a.get(WAIT_S) == ComfyExited(-9)
    assert await b.get(WAIT_S) == ComfyExited(-9)
    assert await everything.get(WAIT_S) == ComfyExited(-9)
    b.close()
    await stream.stop()
    assert await a.get(WAIT_S) == StreamDisconnected("stopped")
    with pytest.raises(SubscriptionClosed):
        await a.get(WAIT_S)
    assert len(b) == 0  # closed before stop: it heard nothing more
