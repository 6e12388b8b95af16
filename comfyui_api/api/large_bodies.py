"""Frees a large request body as soon as its request ends. A refused body can stay referenced from a reference
cycle (an exception's traceback holds the frames that held the decoded body, in Litestar's validation among
others), and CPython frees cycles only at a full collection, which can be many requests away: eight refused 48 MB
bodies would otherwise hold about 800 MB. After a request whose body passed `LARGE_BODY_BYTES`, this runs one full
collection (at most four a second; those asked for meanwhile are coalesced into one)."""

from __future__ import annotations

import asyncio
import gc
import time

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

LARGE_BODY_BYTES = 8 * 1024 * 1024
_MIN_INTERVAL_S = 0.25  # a full collection costs tens of ms on a big heap: not once per request in a burst


class ReleaseLargeBodies(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self) -> None:
        self._collected_at = 0.0
        self._scheduled: asyncio.TimerHandle | None = None

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        declared = _content_length(scope)
        if declared is not None and declared < LARGE_BODY_BYTES:
            await next_app(scope, receive, send)  # most requests: nothing to count
            return
        received = 0

        async def counting_receive() -> ReceiveMessage:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        try:
            await next_app(scope, counting_receive, send)
        finally:
            if received >= LARGE_BODY_BYTES:
                self._collect_soon()

    def _collect_soon(self) -> None:
        wait_s = self._collected_at + _MIN_INTERVAL_S - time.monotonic()
        if wait_s <= 0:
            self._collect()
        elif self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(wait_s, self._collect)

    def _collect(self) -> None:
        self._scheduled = None
        self._collected_at = time.monotonic()
        gc.collect()


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
