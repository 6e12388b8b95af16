"""A minimal ComfyUI stand-in for ComfyInstance tests: /system_stats, /ws with the handshake, POST /prompt that
"runs" a graph at once and sends the frame sequence of a successful run, GET /history/{id}, and a test-only
POST /test/drop_ws that closes every websocket. Run as `python fake_comfyui.py PORT`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from typing import Any

from aiohttp import WSMsgType, web


class FakeComfyUI:
    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.history: dict[str, Any] = {}

    async def send(self, client_id: str | None, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(client_id or "")
        if ws is not None and not ws.closed:
            await ws.send_str(json.dumps({"type": kind, "data": data}))

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await ws.send_str(
                json.dumps({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}})
            )
            async for message in ws:
                if message.type == WSMsgType.TEXT and '"feature_flags"' in message.data:
                    await ws.send_str(
                        json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
                    )
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    async def prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        prompt_id = body.get("prompt_id") or str(uuid.uuid4())
        asyncio.get_running_loop().create_task(self.run(prompt_id, body["prompt"], body.get("client_id")))
        return web.json_response({"prompt_id": prompt_id, "number": 1, "node_errors": {}})

    async def run(self, prompt_id: str, graph: dict[str, Any], client_id: str | None) -> None:
        now = int(time.time() * 1000)
        await self.send(client_id, "execution_start", {"prompt_id": prompt_id, "timestamp": now})
        await self.send(client_id, "execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": now})
        outputs = {}
        for node_id in graph:
            await self.send(client_id, "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id})
            if graph[node_id].get("class_type") == "PreviewAny":
                outputs[node_id] = {"text": ["hello"]}
                await self.send(
                    client_id, "executed", {"node": node_id, "output": outputs[node_id], "prompt_id": prompt_id}
                )
        self.history[prompt_id] = {
            "outputs": outputs,
            "status": {"status_str": "success", "completed": True, "messages": []},
        }
        await self.send(client_id, "execution_success", {"prompt_id": prompt_id, "timestamp": now})
        await self.send(client_id, "executing", {"node": None, "prompt_id": prompt_id})

    async def get_history(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        entry = self.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry else {})

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "fake"}, "devices": []})

    async def drop_ws(self, request: web.Request) -> web.Response:
        for ws in list(self.sockets.values()):
            await ws.close()
        return web.Response()


def main() -> None:
    port = int(sys.argv[1])
    fake = FakeComfyUI()
    app = web.Application()
    app.router.add_get("/ws", fake.websocket)
    app.router.add_post("/prompt", fake.prompt)
    app.router.add_get("/history/{prompt_id}", fake.get_history)
    app.router.add_get("/system_stats", fake.system_stats)
    app.router.add_post("/test/drop_ws", fake.drop_ws)
    # Exit at once with code 0 on SIGTERM (aiohttp's own handler would wait for open websockets to close).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(f"fake ComfyUI listening on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=False)


if __name__ == "__main__":
    main()
