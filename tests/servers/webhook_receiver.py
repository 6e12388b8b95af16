"""A real HTTP webhook receiver on loopback for tests: records every request and answers as scripted.

    async with WebhookReceiver() as receiver:
        receiver.script("/hook", Reply(500), Reply(503, headers={"Retry-After": "2"}), Reply(200))
        ... POST to receiver.url("/hook") ...
        requests = await receiver.wait_for(3, path="/hook")

Unscripted requests (or those past the end of a script) get `default` (200). `Reply(hang=True)` holds the request
open until the receiver closes. Binds port 0 on 127.0.0.1, so parallel test runs never collide.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    hang: bool = False


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    received_at: float  # time.monotonic()
    answered_with: int | None  # None for a hung request

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, *, default: Reply | None = None, max_body_bytes: int = 1024**2):
        self.default = default or Reply(200)
        self._max_body_bytes = max_body_bytes  # aiohttp answers 413 (unrecorded) to bigger bodies
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._arrived = asyncio.Condition()
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self._port}{path}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to `path` with `replies`, in order."""
        self._scripts[path].extend(replies)

    def received(self, path: str | None = None) -> list[ReceivedRequest]:
        return [r for r in self.requests if path is None or r.path == path]

    async def wait_for(self, count: int, *, path: str | None = None, timeout_s: float = 10.0) -> list[ReceivedRequest]:
        """Wait until at least `count` requests (to `path`, if given) have arrived; fails the test on timeout."""
        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.received(path)) >= count)
        return self.received(path)

    async def start(self) -> WebhookReceiver:
        app = web.Application(client_max_size=self._max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> WebhookReceiver:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        script = self._scripts.get(request.path)
        reply = script.popleft() if script else self.default
        await self._record(request, body, None if reply.hang else reply.status)
        if reply.hang:
            await self._released.wait()
            return web.Response(status=503)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return web.Response(status=reply.status, headers=dict(reply.headers), body=reply.body)

    async def _record(self, request: web.Request, body: bytes, status: int | None) -> None:
        received = ReceivedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            received_at=time.monotonic(),
            answered_with=status,
        )
        async with self._arrived:
            self.requests.append(received)
            self._arrived.notify_all()
