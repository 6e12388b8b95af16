"""comfy/transport.py under ComfyClient, against loopback sockets: a ComfyUI that never answers is a timeout, one that
hangs up or is not there is unreachable (not a timeout), a streamed answer arrives whole, a prompt is sent as JSON
and ComfyUI's refusal read back, an output download that breaks off or stalls fails and leaves no file, and a
request passed on to a ComfyUI that stops reading it is a timeout, not a hang (aiohttp itself bounds no write)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.errors import ComfyProtocolError, ComfyUnavailable, WorkflowRejected

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    """A raw HTTP/1.1 peer on loopback; its connections are closed when the test ends."""
    connections: set[asyncio.Task[None]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def hangs_up() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def deaf() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # takes the connection, reads nothing

    async for url in _serve(handler):
        yield url


@pytest.fixture
async def chunked() -> AsyncIterator[str]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"system": ', b'{"os": "posix"}, ', b'"devices": []}'):
            writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async for url in _serve(handler):
        yield url


async def test_a_comfyui_that_never_answers_is_a_timeout(silent: str) -> None:
    client = ComfyClient(silent, timeout_s=0.3)
    with pytest.raises(ComfyUnavailable, match=r"did not answer GET /system_stats within 0.3s"):
        await client.system_stats()
    await client.aclose()


async def test_a_comfyui_that_hangs_up_is_unreachable_not_slow(hangs_up: str) -> None:
    client = ComfyClient(hangs_up, timeout_s=5)
    with pytest.raises(ComfyUnavailable, match="unreachable") as failed:
        await client.system_stats()
    assert "within" not in str(failed.value)
    await client.aclose()


async def test_a_chunked_answer_arrives_whole(chunked: str) -> None:
    client = ComfyClient(chunked, timeout_s=5)
    assert await client.system_stats() == {"system": {"os": "posix"}, "devices": []}
    await client.aclose()


async def test_a_comfyui_that_stops_reading_an_upload_is_a_timeout(deaf: str) -> None:
    """Sending the body stalls once the socket buffers are full."""
    client = ComfyClient(deaf, timeout_s=0.5)

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    with pytest.raises(ComfyUnavailable, match=r"did not take POST /upload/image within 0.5s"):
        await client.forward("POST", "/upload/image", content=endless())
    await client.aclose()


async def test_a_prompt_goes_as_json_and_comfyuis_refusal_comes_back() -> None:
    received: list[tuple[bytes, bytes]] = []
    refusal = {
        "error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation"},
        "node_errors": {"2": {"errors": [{"message": "Required input is missing", "details": "images"}]}},
    }

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:])
        received.append((head, await reader.readexactly(length)))
        body = json.dumps(refusal).encode()
        writer.write(
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        writer.write(body)
        await writer.drain()

    async for url in _serve(handler):
        client = ComfyClient(url, timeout_s=5)
        graph = {"2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "é"}}}
        with pytest.raises(WorkflowRejected, match="Required input is missing") as refused:
            await client.queue_prompt(graph, prompt_id="p-1", client_id="c-1")
        await client.aclose()
    assert refused.value.details["node_errors"] == refusal["node_errors"]
    [(head, body)] = received
    assert head.startswith(b"POST /prompt HTTP/1.1\r\n") and b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"prompt": graph, "prompt_id": "p-1", "client_id": "c-1"}


@pytest.mark.parametrize(
    ("ending", "failure", "message"),
    [
        ("whole", None, ""),
        ("missing", ComfyProtocolError, "status 404"),
        ("broken off", ComfyUnavailable, "lost ComfyUI while downloading out.png"),
        ("stalled", ComfyUnavailable, "stalled for 0.3s sending out.png"),
    ],
)
async def test_an_output_download_arrives_whole_or_fails_leaving_no_file(
    ending: str, failure: type[Exception] | None, message: str, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 64

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"GET /view?filename=out.png&subfolder=&type=output HTTP/1.1")
        if ending == "missing":
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\n\r\n" % len(payload))
        writer.write(payload if ending == "whole" else payload[:1000])
        await writer.drain()
        if ending == "stalled":
            await asyncio.sleep(30)

    dest = tmp_path / "out.png"
    async for url in _serve(handler):
        client = ComfyClient(url, timeout_s=0.3)
        try:
            if failure is None:
                assert await client.download_output("out.png", "", "output", dest) == len(payload)
            else:
                with pytest.raises(failure, match=message):
                    await client.download_output("out.png", "", "output", dest)
        finally:
            await client.aclose()
    assert dest.read_bytes() == payload if failure is None else not dest.exists()
