"""The contract suite's target: start or attach to a ComfyUI (real or simulated), talk HTTP and /ws to it.

Owns target start-up and shutdown, the websocket frame collector and the small HTTP helpers shared by the
contract tests and the transcript recorder. Must not import ComfyUI code or anything from comfyui_api.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from tests.servers.processes import free_port

READY_TIMEOUT_REAL_S = 180.0
READY_TIMEOUT_SIMULATOR_S = 30.0
READY_POLL_INTERVAL_S = 0.2
STOP_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 60.0
# A KSampler run on the real CPU ComfyUI loads a 2 GB checkpoint first (about 12 s) and takes ~3-4 s a step.
MODEL_RUN_TIMEOUT_S = 240.0
LOG_TAIL_CHARS = 4000

# A websocket frame as received: a decoded text frame (dict) or a binary frame (bytes). Typed loosely because
# tests index text frames directly after checking their type.
Frame = Any


@dataclass
class Target:
    """One ComfyUI-speaking server under test, and where it keeps its files."""

    base_url: str
    is_real: bool
    input_dir: Path | None
    output_dir: Path | None
    temp_dir: Path | None
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    scratch: Path | None = None
    argv: tuple[str, ...] = field(default_factory=tuple)
    version: str = ""  # what /system_stats says, e.g. "0.3.64" or "0.33.0"

    def at_least(self, version: str) -> bool:
        """Whether the target is this ComfyUI release or a newer one (the contract differs by version)."""
        return version_tuple(self.version) >= version_tuple(version)

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http") + "/ws"

    @property
    def kind(self) -> str:
        return "real" if self.is_real else "simulator"

    def log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log: attached to a running server)"
        return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def version_tuple(version: str) -> tuple[int, ...]:
    """ "0.33.0" -> (0, 33, 0); anything unreadable counts as 0."""
    parts = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@dataclass(frozen=True)
class TargetSpec:
    """How to reach the target, decided once from the environment (and, for the simulator, which ComfyUI version
    profile it runs)."""

    url: str | None
    comfyui_dir: Path | None
    python: str
    url_is_simulator: bool
    simulator_version: str | None = None  # the simulator's --comfyui-version (None: its default, the newest)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TargetSpec:
        url = env.get("COMFYUI_TEST_URL") or None
        comfyui_dir = env.get("COMFYUI_TEST_DIR") or None
        return cls(
            url=url.rstrip("/") if url else None,
            comfyui_dir=Path(comfyui_dir) if comfyui_dir else None,
            python=env.get("COMFYUI_TEST_PYTHON") or sys.executable,
            url_is_simulator=env.get("COMFYUI_TEST_KIND", "").lower() == "simulator",
        )

    @property
    def is_real(self) -> bool:
        if self.url is not None:
            return not self.url_is_simulator
        return self.comfyui_dir is not None

    @property
    def can_start(self) -> bool:
        """Whether a fresh server (with extra flags) can be started: always, unless only a URL was given."""
        return self.url is None or self.comfyui_dir is not None


def start_target(spec: TargetSpec, extra_args: Sequence[str] = (), step_seconds: float | None = None) -> Target:
    """Start a fresh server with its own input/output/temp dirs and wait until /system_stats answers."""
    scratch = Path(tempfile.mkdtemp(prefix="comfy-contract-"))
    dirs = {name: scratch / name for name in ("input", "output", "temp")}
    for path in dirs.values():
        path.mkdir()
    port = free_port()
    common = [
        "--listen", "127.0.0.1", "--port", str(port),
        "--input-directory", str(dirs["input"]),
        "--output-directory", str(dirs["output"]),
        "--temp-directory", str(dirs["temp"]),
    ]  # fmt: skip
    real = spec.comfyui_dir is not None
    if real:
        assert spec.comfyui_dir is not None
        argv = [spec.python, "main.py", "--cpu", "--disable-auto-launch", *common, *extra_args]
        cwd = spec.comfyui_dir
    else:
        argv = [sys.executable, "-m", "comfyui_api.simulator", *common, "--base-directory", str(scratch), *extra_args]
        if spec.simulator_version is not None:
            argv += ["--comfyui-version", spec.simulator_version]
        if step_seconds is not None:
            argv += ["--step-seconds", str(step_seconds)]
        cwd = scratch
        _write_stub_checkpoint(scratch / "models" / "checkpoints" / "contract-sd15.safetensors")
    log_path = scratch / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if not real:
        repo_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (repo_root, env.get("PYTHONPATH", "")) if p)
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    target = Target(
        base_url=f"http://127.0.0.1:{port}",
        is_real=real,
        input_dir=dirs["input"],
        output_dir=dirs["output"],
        # ComfyUI keeps temp files in a "temp" folder inside --temp-directory.
        temp_dir=dirs["temp"] / "temp",
        process=process,
        log_path=log_path,
        scratch=scratch,
        argv=tuple(argv),
    )
    try:
        wait_ready(target, READY_TIMEOUT_REAL_S if real else READY_TIMEOUT_SIMULATOR_S)
    except BaseException:
        target.stop()
        raise
    return target


def _write_stub_checkpoint(path: Path) -> None:
    """A valid, tensor-free safetensors file: the simulator only needs a checkpoint name to list and load."""
    header = json.dumps({"__metadata__": {"purpose": "contract tests"}}).encode()
    header += b" " * (-len(header) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(header)) + header)


def wait_ready(target: Target, timeout_s: float) -> None:
    """Poll GET /system_stats until 200 while the process lives; raise with the server log otherwise."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if target.process is not None and target.process.poll() is not None:
                raise RuntimeError(
                    f"{target.kind} target exited with {target.process.returncode} before it was ready:\n"
                    f"{' '.join(target.argv)}\n{target.log_tail()}"
                )
            try:
                response = client.get(target.base_url + "/system_stats")
                if response.status_code == 200:
                    target.version = str(response.json()["system"].get("comfyui_version", ""))
                    return
            except httpx.HTTPError as exc:
                last_error = repr(exc)
            time.sleep(READY_POLL_INTERVAL_S)
    raise RuntimeError(
        f"{target.kind} target not ready after {timeout_s:.0f}s ({last_error}):\n{' '.join(target.argv)}\n"
        f"{target.log_tail()}"
    )


def attach_target(url: str, is_real: bool) -> Target:
    """Use an already-running server; its directories come from its command line and folder paths."""
    target = Target(base_url=url, is_real=is_real, input_dir=None, output_dir=None, temp_dir=None)
    wait_ready(target, 10.0)
    with httpx.Client(timeout=HTTP_TIMEOUT_S) as client:
        stats = client.get(url + "/system_stats").json()
        folders = client.get(url + "/internal/folder_paths").json()
    dirs = _dirs_from_server(stats["system"].get("argv", []), folders)
    target.input_dir, target.output_dir, target.temp_dir = dirs
    return target


def _dirs_from_server(argv: Sequence[str], folders: Mapping[str, list[str]]) -> tuple[Path, Path, Path]:
    """ComfyUI's input/output/temp dirs: explicit flags win, else they sit beside custom_nodes."""
    flags: dict[str, str] = {}
    for flag, value in zip(argv, [*argv[1:], ""], strict=True):
        if flag.startswith("--") and flag.endswith("-directory"):
            flags[flag] = value
    base = Path(flags.get("--base-directory") or Path(folders["custom_nodes"][0]).parent)
    input_dir = Path(flags.get("--input-directory") or base / "input")
    output_dir = Path(flags.get("--output-directory") or base / "output")
    temp_root = flags.get("--temp-directory")
    temp_dir = Path(temp_root) / "temp" if temp_root else base / "temp"
    return input_dir, output_dir, temp_dir


# --------------------------------------------------------------------------------------------- websocket


def frame_type(frame: Frame) -> str:
    """`status`, `executing`, ... for text frames; `binary:<event type>` for binary ones."""
    if isinstance(frame, bytes):
        return f"binary:{struct.unpack('>I', frame[:4])[0] if len(frame) >= 4 else '?'}"
    return str(frame.get("type"))


def frame_types(frames: Iterable[Frame]) -> list[str]:
    return [frame_type(frame) for frame in frames]


def is_terminal(frame: Frame, prompt_id: str) -> bool:
    if isinstance(frame, bytes) or frame.get("type") != "executing":
        return False
    data = frame.get("data") or {}
    return data.get("node") is None and data.get("prompt_id") == prompt_id


class WsClient:
    """One /ws connection that decodes text frames to dicts and keeps binary frames as bytes."""

    def __init__(self, connection: ClientConnection, client_id: str | None) -> None:
        self.connection = connection
        self.client_id = client_id
        self.connect_frames: list[Frame] = []

    async def send_json(self, payload: Any) -> None:
        await self.connection.send(json.dumps(payload))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def recv(self, timeout_s: float) -> Frame:
        message = await asyncio.wait_for(self.connection.recv(), timeout_s)
        if isinstance(message, bytes):
            return message
        return dict(json.loads(message))

    async def recv_type(self, wanted: str, timeout_s: float) -> Frame:
        """Skip frames until one of type `wanted` arrives (status frames of other work may come first)."""
        deadline = time.monotonic() + timeout_s
        while True:
            frame = await self.recv(max(deadline - time.monotonic(), 0.001))
            if frame_type(frame) == wanted:
                return frame

    async def drain(self, quiet_s: float = 0.3, limit: int = 1000) -> list[Frame]:
        """Frames until none arrives for quiet_s."""
        frames: list[Frame] = []
        while len(frames) < limit:
            try:
                frames.append(await self.recv(quiet_s))
            except TimeoutError:
                break
        return frames

    async def collect_run(self, prompt_id: str, timeout_s: float = RUN_TIMEOUT_S) -> list[Frame]:
        """Every frame up to and including the terminal `executing` node=null for prompt_id."""
        deadline = time.monotonic() + timeout_s
        frames: list[Frame] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no terminal frame for {prompt_id} within {timeout_s}s; got {frame_types(frames)}")
            try:
                frame = await self.recv(remaining)
            except TimeoutError:
                continue
            frames.append(frame)
            if is_terminal(frame, prompt_id):
                return frames

    async def negotiate_features(self, timeout_s: float = 5.0) -> dict[str, Any]:
        await self.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        reply = await self.recv_type("feature_flags", timeout_s)
        assert isinstance(reply, dict)
        return reply

    async def close(self) -> None:
        await self.connection.close()


@contextlib.asynccontextmanager
async def open_ws(
    target: Target, client_id: str | None = "", feature_flags: bool = False, timeout_s: float = 10.0
) -> AsyncIterator[WsClient]:
    """Connect to /ws (a fresh clientId unless one is given; None sends no clientId) and read the status frame."""
    if client_id == "":
        client_id = "contract-" + uuid.uuid4().hex
    url = target.ws_url + (f"?clientId={client_id}" if client_id is not None else "")
    async with connect(url, max_size=None, open_timeout=timeout_s, close_timeout=2.0) as connection:
        client = WsClient(connection, client_id)
        client.connect_frames.append(await client.recv(timeout_s))
        if feature_flags:
            client.connect_frames.append(await client.negotiate_features(timeout_s))
        yield client


def binary_header(frame: bytes) -> tuple[int, int]:
    """(event type, second u32): image type for type 1, metadata length for type 4."""
    return struct.unpack(">II", frame[:8])


def split_metadata_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """A type 4 frame's metadata JSON and image bytes."""
    event, length = binary_header(frame)
    assert event == 4, f"not a metadata preview frame: type {event}"
    return dict(json.loads(frame[8 : 8 + length].decode("utf-8"))), frame[8 + length :]


# ------------------------------------------------------------------------------------------------- http


async def post_prompt(
    client: httpx.AsyncClient, graph: Mapping[str, Any], client_id: str | None = None, **fields: Any
) -> httpx.Response:
    body: dict[str, Any] = {"prompt": graph, **fields}
    if client_id is not None:
        body["client_id"] = client_id
    return await client.post("/prompt", json=body)


async def queue_prompt(
    client: httpx.AsyncClient, graph: Mapping[str, Any], client_id: str | None = None, **fields: Any
) -> str:
    response = await post_prompt(client, graph, client_id, **fields)
    assert response.status_code == 200, f"POST /prompt: {response.status_code} {response.text}"
    return str(response.json()["prompt_id"])


async def wait_history(client: httpx.AsyncClient, prompt_id: str, timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """The history entry of prompt_id once it finished (poll; for prompts without a socket)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        body = (await client.get(f"/history/{prompt_id}")).json()
        if prompt_id in body:
            return dict(body[prompt_id])
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{prompt_id} not in history after {timeout_s}s")


async def wait_idle(client: httpx.AsyncClient, timeout_s: float = MODEL_RUN_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await client.get("/prompt")).json()["exec_info"]["queue_remaining"] == 0:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"queue not empty after {timeout_s}s")


async def upload(
    client: httpx.AsyncClient, name: str, data: bytes, field_name: str = "image", **form: str
) -> httpx.Response:
    return await client.post("/upload/image", files={field_name: (name, data, "image/png")}, data=form)


async def first_checkpoint(client: httpx.AsyncClient) -> str | None:
    response = await client.get("/models/checkpoints")
    names = response.json() if response.status_code == 200 else []
    return str(names[0]) if names else None
