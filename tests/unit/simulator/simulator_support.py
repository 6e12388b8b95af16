"""Shared pieces of the simulator tests: recorded ComfyUI captures, an in-process simulator on a free loopback
port, and small clients for HTTP, multipart uploads and the /ws stream."""

from __future__ import annotations

import io
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from PIL import Image

from comfyui_api.simulator.config import SimulatorConfig, parse_config
from comfyui_api.simulator.simulator import Simulator

CAPTURES = Path(__file__).parent / "captures"
WAIT_S = 20.0  # a safety net for a broken test, not a timing assertion


def load_capture(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())


def make_config(root: Path, *extra: str, version: str = "0.3.64") -> SimulatorConfig:
    """A simulator config; by default of the 0.3.64 profile, which the captures under CAPTURES were recorded from."""
    args = ["--listen", "127.0.0.1", "--port", "0", "--input-directory", str(root / "input"),
            "--output-directory", str(root / "output"), "--temp-directory", str(root / "tmp"),
            "--step-seconds", "0.01", "--comfyui-version", version, *extra]  # fmt: skip
    return parse_config(args, default_base=root)


def png_bytes(color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


_TRACEBACK = re.compile(r'"traceback": \[.*?\](?=, "|})', re.DOTALL)


def without_tracebacks(body: Any) -> str:
    """JSON text with traceback lists blanked: they name source files and lines, which differ by design."""
    return _TRACEBACK.sub('"traceback": "..."', json.dumps(body, sort_keys=True))


def invert_graph(prefix: str, color: int = 3368652) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def txt2img_graph(checkpoint: str, prefix: str, seed: int, steps: int) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": prefix}},
    }  # fmt: skip


@dataclass
class RunningSimulator:
    sim: Simulator
    base_url: str
    session: aiohttp.ClientSession

    @property
    def root(self) -> Path:
        return self.sim.config.base_dir

    async def request(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        timeout = aiohttp.ClientTimeout(total=WAIT_S)
        async with self.session.request(method, self.base_url + path, timeout=timeout, **kwargs) as response:
            return response.status, dict(response.headers), await response.read()

    async def post_prompt(self, prompt: Any, client_id: str | None = None, **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"prompt": prompt, **fields}
        if client_id is not None:
            body["client_id"] = client_id
        status, _, raw = await self.request("POST", "/prompt", json=body)
        assert status == 200, raw
        return dict(json.loads(raw))

    async def upload(self, filename: str, data: bytes, path: str = "/upload/image", **fields: str) -> tuple[int, bytes]:
        """A hand-built multipart body, so the filename reaches the server byte for byte."""
        boundary = "simtestboundary" + uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                 for k, v in fields.items()]  # fmt: skip
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, raw = await self.request("POST", path, data=body, headers=headers)
        return status, raw

    @asynccontextmanager
    async def websocket(self, client_id: str | None = None) -> AsyncIterator[WsStream]:
        url = self.base_url.replace("http", "ws", 1) + "/ws" + (f"?clientId={client_id}" if client_id else "")
        async with self.session.ws_connect(url) as ws:
            stream = WsStream(ws)
            stream.hello = await stream.next_frame()
            yield stream


class WsStream:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.hello: Any = None

    async def next_frame(self, timeout_s: float = WAIT_S) -> Any:
        message = await self.ws.receive(timeout=timeout_s)
        if message.type == aiohttp.WSMsgType.BINARY:
            return bytes(message.data)
        assert message.type == aiohttp.WSMsgType.TEXT, message
        return json.loads(message.data)

    async def until_done(self, prompt_id: str) -> list[Any]:
        """Frames up to and including the terminal `executing` node=null of prompt_id."""
        frames = []
        while True:
            frame = await self.next_frame()
            frames.append(frame)
            if (isinstance(frame, dict) and frame["type"] == "executing" and frame["data"]["node"] is None
                    and frame["data"].get("prompt_id") == prompt_id):  # fmt: skip
                return frames

    async def quiet(self, quiet_s: float = 0.3) -> list[Any]:
        frames = []
        while True:
            try:
                frames.append(await self.next_frame(quiet_s))
            except TimeoutError:
                return frames


def kinds(frames: Sequence[Any]) -> list[str]:
    """`type` or `type:node` for text frames, `binary:N` for binary ones (N = event type)."""
    out = []
    for frame in frames:
        if isinstance(frame, bytes):
            out.append(f"binary:{int.from_bytes(frame[:4], 'big')}")
        elif frame["type"] in ("executing", "executed"):
            out.append(f"{frame['type']}:{frame['data']['node']}")
        else:
            out.append(frame["type"])
    return out


def capture_kinds(frames: Sequence[Mapping[str, Any]]) -> list[str]:
    as_frames = [f["json"] if "json" in f else f["event_type"].to_bytes(4, "big") for f in frames]
    return kinds(as_frames)


@asynccontextmanager
async def running_simulator(root: Path, *extra: str) -> AsyncIterator[RunningSimulator]:
    sim = Simulator(make_config(root, *extra))
    sim.prepare_folders()
    await sim.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield RunningSimulator(sim, f"http://127.0.0.1:{sim.bound_port()}", session)
    finally:
        await sim.stop()
