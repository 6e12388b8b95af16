"""ComfyClient.forward (the /comfyui door's pass-through) against an aiohttp server on loopback: the answer streams
as ComfyUI sends it, a request body given as chunks arrives whole, and an unreachable ComfyUI is ComfyUnavailable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.errors import ComfyUnavailable

PART = b"x" * 65536


class SlowComfy:
    """Answers GET /big in two parts, the second only once `go_on` is set; POST /echo answers what it was sent."""

    def __init__(self) -> None:
        self.go_on = asyncio.Event()
        self.received: list[tuple[str, bytes]] = []

    async def big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-test"})
        await response.prepare(request)
        await response.write(PART)
        await self.go_on.wait()
        await response.write(PART)
        await response.write_eof()
        return response

    async def echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.headers.get("Content-Type", ""), body))
        return web.Response(body=body, status=201, content_type="application/octet-stream")


@pytest.fixture
async def comfy() -> AsyncIterator[tuple[SlowComfy, ComfyClient]]:
    fake = SlowComfy()
    app = web.Application()
    app.router.add_get("/big", fake.big)
    app.router.add_post("/echo", fake.echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    client = ComfyClient(f"http://127.0.0.1:{runner.addresses[0][1]}", timeout_s=5)
    yield fake, client
    fake.go_on.set()
    await client.aclose()
    await runner.cleanup()


async def test_the_answer_streams_through_as_comfyui_sends_it(comfy: tuple[SlowComfy, ComfyClient]) -> None:
    fake, client = comfy
    answer = await client.forward("GET", "/big")
    assert (answer.status_code, answer.content_type) == (200, "application/x-test")
    received = bytearray()
    async with asyncio.timeout(5):
        async for chunk in answer.body:
            received += chunk
            if len(received) == len(PART):
                assert not fake.go_on.is_set()  # the first part came through before ComfyUI sent the rest
                fake.go_on.set()
    assert bytes(received) == PART + PART


async def test_a_request_body_given_in_chunks_arrives_whole(comfy: tuple[SlowComfy, ComfyClient]) -> None:
    fake, client = comfy

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    answer = await client.forward("POST", "/echo", content=chunks(), content_type="text/csv")
    body = b"".join([chunk async for chunk in answer.body])
    assert (answer.status_code, body) == (201, b"one,two,three")
    assert fake.received == [("text/csv", b"one,two,three")]


async def test_an_unreachable_comfyui_is_unavailable() -> None:
    client = ComfyClient("http://127.0.0.1:9", timeout_s=2)  # the discard port: nothing listens
    with pytest.raises(ComfyUnavailable, match="unreachable"):
        await client.forward("GET", "/object_info")
    await client.aclose()
