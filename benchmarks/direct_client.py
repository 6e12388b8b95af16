"""The baseline: a minimal direct ComfyUI client (POST /prompt, websocket, /history, /view, base64).

It does what a hand-written integration does and nothing more, so comfyui-api's overhead is measured against it.
One websocket is shared by every request, as a well-written client would do.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from typing import Any

import httpx
import websockets


class DirectComfyClient:
    def __init__(self, base_url: str, *, timeout_s: float = 120.0):
        self._base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._client_id = uuid.uuid4().hex
        self._http = httpx.AsyncClient(base_url=self._base_url, timeout=timeout_s)
        self._done: dict[str, asyncio.Future[None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._ws: Any = None

    async def start(self) -> None:
        ws_url = self._base_url.replace("http", "ws", 1) + f"/ws?clientId={self._client_id}"
        self._ws = await websockets.connect(ws_url, max_size=None, open_timeout=10)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self._ws:
            if not isinstance(frame, str):
                continue
            message = json.loads(frame)
            data = message.get("data") or {}
            if message.get("type") == "executing" and data.get("node") is None:
                future = self._done.get(data.get("prompt_id", ""))
                if future is not None and not future.done():
                    future.set_result(None)

    async def run(self, graph: dict[str, Any]) -> list[str]:
        """Run one graph; return its output images as base64 strings."""
        prompt_id = str(uuid.uuid4())  # ComfyUI >= 0.25 takes only canonical UUIDs
        done = asyncio.get_running_loop().create_future()
        self._done[prompt_id] = done
        try:
            body = {"prompt": graph, "client_id": self._client_id, "prompt_id": prompt_id}
            response = await self._http.post("/prompt", json=body)
            response.raise_for_status()
            await asyncio.wait_for(done, self._timeout_s)
        finally:
            self._done.pop(prompt_id, None)
        history = (await self._http.get(f"/history/{prompt_id}")).json()[prompt_id]
        images: list[str] = []
        for output in history["outputs"].values():
            for image in output.get("images", []):
                params = {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]}
                view = await self._http.get("/view", params=params)
                view.raise_for_status()
                images.append(base64.b64encode(view.content).decode("ascii"))
        return images

    async def aclose(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self._http.aclose()
