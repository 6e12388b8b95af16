"""A small response leaves in one write: the head is held until the body's first write (or the end of the loop's
turn), and nothing else is held. First against a recording transport, then through uvicorn with the server's own
protocol class, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
import websockets

from comfyui_api.http_limits import bounded_protocol
from comfyui_api.http_writes import CoalescingTransport
from comfyui_api.settings import ServerSettings

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n"


class RecordingTransport:
    """What a transport was asked to do, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", b""))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1234) if name == "peername" else default


def coalescing() -> tuple[CoalescingTransport, RecordingTransport]:
    recorded = RecordingTransport()
    return CoalescingTransport(recorded, asyncio.get_running_loop()), recorded  # type: ignore[arg-type]


async def test_a_head_and_its_body_are_one_write() -> None:
    transport, recorded = coalescing()
    transport.write(HEAD)
    assert recorded.calls == []
    assert transport.get_write_buffer_size() == 7 + len(HEAD)
    transport.write(b'{"ok":true}')
    assert recorded.calls == [("write", HEAD + b'{"ok":true}')]
    await asyncio.sleep(0)  # the end-of-turn flush finds nothing left
    assert len(recorded.calls) == 1


async def test_a_head_whose_body_comes_later_leaves_at_the_end_of_the_turn() -> None:
    transport, recorded = coalescing()
    transport.write(HEAD)
    await asyncio.sleep(0)
    assert recorded.calls == [("write", HEAD)]
    transport.write(b"later")
    assert recorded.calls[-1] == ("write", b"later")


async def test_a_large_body_is_written_after_the_head_not_copied_onto_it() -> None:
    transport, recorded = coalescing()
    body = b"x" * (256 * 1024)
    transport.write(HEAD)
    transport.write(body)
    assert recorded.calls == [("write", HEAD), ("write", body)]


async def test_only_response_heads_are_held() -> None:
    transport, recorded = coalescing()
    frame = b"\x81\x05hello"  # a websocket text frame
    transport.write(frame)
    transport.write(b"HTTP/1.1 200 OK\r\n")  # not a whole head
    transport.write(memoryview(b"body"))
    assert [data for _, data in recorded.calls] == [frame, b"HTTP/1.1 200 OK\r\n", b"body"]
    transport.write(HEAD)
    transport.writelines([b"one ", b"two"])  # never ahead of the held head
    assert recorded.calls[-1] == ("write", HEAD + b"one two")


async def test_closing_sends_a_held_head_first() -> None:
    transport, recorded = coalescing()
    transport.write(HEAD)
    transport.close()
    assert recorded.calls == [("write", HEAD), ("close", b"")]
    await asyncio.sleep(0)
    assert len(recorded.calls) == 2  # and the end-of-turn flush writes nothing after the close
    other, recorded_eof = coalescing()
    other.write(HEAD)
    other.write_eof()
    assert recorded_eof.calls == [("write", HEAD), ("write_eof", b"")]
    assert other.get_extra_info("peername") == ("127.0.0.1", 1234)


# -- through uvicorn ----------------------------------------------------------------------------------------------


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": "echo " + message["text"]})
        await send({"type": "websocket.close", "code": 1000})
    elif scope["path"] == "/small":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"11")]})
        await send({"type": "http.response.body", "body": b'{"ok":true}'})
    else:  # a stream whose second chunk comes a while after its head and first chunk
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first ", "more_body": True})
        await asyncio.sleep(0.2)
        await send({"type": "http.response.body", "body": b"second", "more_body": False})


@contextlib.asynccontextmanager
async def serving(writes: list[bytes]) -> AsyncIterator[int]:
    """uvicorn on a loopback port with the server's protocol class, recording what reaches each socket's real
    transport."""
    base = bounded_protocol(ServerSettings())

    class Recorded(base):  # type: ignore[valid-type, misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            real_write = transport.write

            def write(data: Any) -> None:
                writes.append(bytes(data))
                real_write(data)

            transport.write = write  # type: ignore[method-assign]
            super().connection_made(transport)

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen()  # connections wait in the backlog until uvicorn takes the socket
    config = uvicorn.Config(app, http=Recorded, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listening]))
    try:
        yield listening.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_through_uvicorn_a_small_answer_is_one_write_and_streams_and_websockets_still_flow() -> None:
    writes: list[bytes] = []
    async with serving(writes) as port, httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        answer = await client.get("/small")
        assert answer.json() == {"ok": True}
        assert len(writes) == 1 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert writes[0].endswith(b'\r\n\r\n{"ok":true}')

        writes.clear()
        async with client.stream("GET", "/stream") as streamed:
            assert streamed.status_code == 200
            chunks = [chunk async for chunk in streamed.aiter_bytes()]
        assert b"".join(chunks) == b"first second"
        assert len(writes) == 2 and writes[0].startswith(b"HTTP/1.1 200 OK\r\n") and b"first " in writes[0]

        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as socket_:
            await socket_.send("hi")
            assert await asyncio.wait_for(socket_.recv(), 5) == "echo hi"
