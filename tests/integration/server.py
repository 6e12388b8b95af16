"""Start the real server (`python -m comfyui_api`) as a subprocess on loopback, with the simulator as its ComfyUI,
everything under one temporary root; plus graph factories and small HTTP helpers shared by integration tests.

COMFYUI_TEST_DIR (a ComfyUI checkout) and COMFYUI_TEST_PYTHON (its interpreter), the variables the contract suite
reads, make the server launch that real ComfyUI on the CPU instead; TARGET says which one this run uses.

Usage:
    server = start_server(tmp_path, env={"MAX_QUEUE_DEPTH": "4"})
    try: ... httpx.post(server.url("/prompt"), json={...}) ...
    finally: server.stop()
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
from PIL import Image

from tests.graphs import txt2img_graph
from tests.servers.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT_S = 30.0
SIMULATED_CHECKPOINT = "test-model.safetensors"
# The random-weight SD1.5 checkpoint the real test checkout keeps in models/checkpoints.
REAL_CHECKPOINT = "random-sd15.safetensors"

T = TypeVar("T")


@dataclass(frozen=True)
class ComfyTarget:
    """Which ComfyUI the server launches: the bundled simulator, or a real checkout run on the CPU."""

    checkout: Path | None = None
    python: str = sys.executable

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ComfyTarget:
        checkout = env.get("COMFYUI_TEST_DIR") or None
        return cls(Path(checkout) if checkout else None, env.get("COMFYUI_TEST_PYTHON") or sys.executable)

    @property
    def is_real(self) -> bool:
        return self.checkout is not None

    @property
    def checkpoint(self) -> str:
        return REAL_CHECKPOINT if self.is_real else SIMULATED_CHECKPOINT

    @property
    def start_timeout_s(self) -> float:
        # A real ComfyUI imports torch and its node packs for 6-11 s on an idle machine; far longer on a busy one.
        return 180.0 if self.is_real else 60.0

    def pick(self, *, simulator: T, real: T) -> T:
        """A value that depends on the target: a step count, a timeout."""
        return real if self.is_real else simulator

    def home(self, dirs: ComfyDirs) -> Path:
        """COMFY_HOME: the working directory of the ComfyUI command."""
        return self.checkout if self.checkout is not None else dirs.root

    def cmd(self, port: int, dirs: ComfyDirs, *, step_seconds: float, extra: tuple[str, ...] = ()) -> list[str]:
        """The argv that starts this ComfyUI on `port` with its folders under `dirs` (run it in `home`)."""
        if self.checkout is None:
            return simulator_cmd(port, dirs, step_seconds=step_seconds, extra=extra)
        return [
            self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
            "--input-directory", str(dirs.input), "--output-directory", str(dirs.output),
            "--temp-directory", str(dirs.temp), "--user-directory", str(dirs.user),
            # float32 weights: on a CPU float16 sampling is about twice as slow.
            "--force-fp32", *extra,
        ]  # fmt: skip


TARGET = ComfyTarget.from_env(os.environ)
CHECKPOINT = TARGET.checkpoint
START_TIMEOUT_S = TARGET.start_timeout_s
# How long a job may take to reach ComfyUI's queue: a real one may still be finishing an interrupted checkpoint load.
QUEUE_WAIT_S = TARGET.pick(simulator=10.0, real=60.0)


@dataclass
class ComfyDirs:
    """The folders ComfyUI (the simulator) works in."""

    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def temp(self) -> Path:
        return self.root / "temp"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def user(self) -> Path:
        """A real ComfyUI's --user-directory, so runs never share the checkout's."""
        return self.root / "user"

    def create(self) -> None:
        for folder in (self.input, self.output, self.temp, self.models / "checkpoints", self.user):
            folder.mkdir(parents=True, exist_ok=True)
        (self.models / "checkpoints" / SIMULATED_CHECKPOINT).write_bytes(b"\0" * 16)

    def files(self) -> list[Path]:
        """Every file left in input/output/temp (the seeded checkpoint does not count)."""
        found: list[Path] = []
        for folder in (self.input, self.output, self.temp):
            found.extend(path for path in folder.rglob("*") if path.is_file())
        return sorted(found)


def simulator_cmd(port: int, dirs: ComfyDirs, *, step_seconds: float, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(port),
        "--input-directory", str(dirs.input), "--output-directory", str(dirs.output),
        "--temp-directory", str(dirs.temp), "--models-directory", str(dirs.models),
        "--step-seconds", str(step_seconds), "--base-directory", str(dirs.root), *extra,
    ]  # fmt: skip


@dataclass
class ServerProcess:
    root: Path
    port: int
    comfy_port: int
    dirs: ComfyDirs
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    args: tuple[str, ...] = ()  # after `python -m comfyui_api` (e.g. a subcommand)
    _log_handle: Any = field(default=None, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tmp_dir(self) -> Path:
        """The server's TMPDIR: its job work folders live here."""
        return self.root / "tmp"

    def url(self, path: str) -> str:
        return self.base_url + path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> ServerProcess:
        self._log_handle = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comfyui_api", *self.args],
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
        )
        return self

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                if httpx.get(self.url("/ready"), timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready within {timeout_s}s:\n{self.logs()[-4000:]}")

    def comfy_processes(self) -> list[psutil.Process]:
        """The ComfyUI process(es) the server launched."""
        if self.proc is None:
            return []
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def kill_comfy(self) -> None:
        for child in self.comfy_processes():
            child.kill()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait_exit(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self._log_handle is not None:
                self._log_handle.close()
                self._log_handle = None

    def stop(self) -> int | None:
        """SIGTERM, wait; SIGKILL the whole tree if it hangs. Returns the exit code."""
        if self.proc is None:
            return None
        children = self.comfy_processes()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.wait_exit()
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.wait_exit()
        for child in children:
            if child.is_running():
                child.kill()
        return code


def make_server(
    root: Path, *, env: Mapping[str, str] | None = None, step_seconds: float = 0.02, comfy_extra: tuple[str, ...] = ()
) -> ServerProcess:
    """A configured, not yet started server under `root`. `env` overrides (e.g. CMD, MAX_QUEUE_DEPTH)."""
    root.mkdir(parents=True, exist_ok=True)
    dirs = ComfyDirs(root / "comfy")
    dirs.create()
    (root / "tmp").mkdir(exist_ok=True)
    port, comfy_port = free_port(), free_port()
    base_env = {key: value for key, value in os.environ.items() if not key.startswith(("COMFY", "AWS_", "AZURE_"))}
    base_env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "COMFYUI_PORT_HOST": str(comfy_port),
            "COMFY_HOME": str(TARGET.home(dirs)),
            "INPUT_DIR": str(dirs.input),
            "OUTPUT_DIR": str(dirs.output),
            "TEMP_DIR": str(dirs.temp),
            "MODEL_DIR": str(dirs.models),
            "CMD": shlex.join(TARGET.cmd(comfy_port, dirs, step_seconds=step_seconds, extra=comfy_extra)),
            "COMFYUI_API_HOME": str(root / "home"),
            "CACHE_DIR": str(root / "cache"),
            "TMPDIR": str(root / "tmp"),
            "STARTUP_CHECK_INTERVAL_S": "0.1",
            "SHUTDOWN_GRACE_S": "20",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            # The test servers (webhook receivers, file and object stores) listen on loopback; the guard itself is
            # tested with this off (test_server_security.py, tests/component/storage/test_outbound_guard.py).
            "ALLOW_PRIVATE_URLS": "true",
        }
    )
    if TARGET.is_real:
        base_env["STARTUP_CHECK_MAX_TRIES"] = str(int(START_TIMEOUT_S / 0.1))
    base_env.update(env or {})
    return ServerProcess(root, port, comfy_port, dirs, base_env, root / "server.log")


def start_server(root: Path, **kwargs: Any) -> ServerProcess:
    """make_server(...).start() and wait until /ready answers 200."""
    server = make_server(root, **kwargs).start()
    try:
        server.wait_ready()
    except Exception:
        server.stop()
        raise
    return server


def running_server(root: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    """For fixtures: yields a ready server, stops it afterwards."""
    server = start_server(root, **kwargs)
    try:
        yield server
    finally:
        server.stop()


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float = 10.0, interval_s: float = 0.05
) -> None:
    """Poll `check` until it returns True; TimeoutError after timeout_s."""
    async with asyncio.timeout(timeout_s):
        while True:
            if await check():
                return
            await asyncio.sleep(interval_s)


async def comfy_queue(comfy_port: int) -> dict[str, list[Any]]:
    """ComfyUI's own GET /queue."""
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{comfy_port}/queue")).json()


async def unkept_files(server: ServerProcess) -> list[str]:
    """Files that should not be there: anything in ComfyUI's folders or a staged input, and any work file that is not
    an output a job record keeps (each served at /jobs/<id>/outputs/<i>, named `<job id>@<index>_<filename>`; the
    store removes those later)."""
    problems = [str(path) for path in server.dirs.files()]
    files = [path for path in server.tmp_dir.rglob("*") if path.is_file()]
    async with httpx.AsyncClient(timeout=10) as client:
        for path in files:
            job_id, separator, rest = path.name.partition("@")
            index = int(rest.split("_", 1)[0]) if separator and rest[:3].isdigit() else -1
            response = await client.get(server.url(f"/jobs/{job_id}")) if index >= 0 else None
            outputs = response.json().get("outputs") or [] if response is not None and response.is_success else []
            if index < 0 or index >= len(outputs) or outputs[index]["url"] != f"/jobs/{job_id}/outputs/{index}":
                problems.append(str(path))
    return problems


async def only_kept_outputs_left(server: ServerProcess) -> bool:
    return not await unkept_files(server)


def is_jobs_prompt(item: list[Any], job_id: str) -> bool:
    """Whether a ComfyUI queue item runs our job: its prompt_id is ComfyUI's own (a fresh uuid4 per submission), so
    the job is recognised by the output names the server gives it (every filename_prefix starts with the job id)."""
    graph = item[2] if len(item) > 2 and isinstance(item[2], dict) else {}
    for node in graph.values():
        prefix = (node.get("inputs") or {}).get("filename_prefix") if isinstance(node, dict) else None
        if isinstance(prefix, str):
            name = prefix.rpartition("/")[2]
            if name == job_id or name.startswith(f"{job_id}_"):
                return item[1] != job_id  # and never under the job id itself
    return False


async def until_in_comfy_queue(
    comfy_port: int, job_id: str, where: str = "queue_running", *, timeout_s: float = QUEUE_WAIT_S
) -> None:
    """Wait until ComfyUI lists the job under `where` ("queue_running" or "queue_pending")."""

    async def listed() -> bool:
        return any(is_jobs_prompt(item, job_id) for item in (await comfy_queue(comfy_port))[where])

    await wait_until(listed, timeout_s=timeout_s)


# ---- graphs ----------------------------------------------------------------------------------------------------


def rgb(color: int) -> tuple[int, int, int]:
    return (color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF


def image_graph(color: int = 0xFF0000, *, size: int = 16, prefix: str = "test") -> dict[str, Any]:
    """EmptyImage(color) -> SaveImage."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1, "color": color}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def load_image_graph(image: str) -> dict[str, Any]:
    """LoadImage(image) -> ImageInvert -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "loaded"}},
    }


def sampler_graph(steps: int, *, seed: int = 1, size: int = 64) -> dict[str, Any]:
    """Checkpoint -> text encode -> KSampler(steps) -> VAEDecode -> SaveImage: slow in proportion to steps."""
    return txt2img_graph(CHECKPOINT, prefix="sampled", seed=seed, steps=steps, size=size, positive="a cat", negative="")


def png_bytes(color: tuple[int, int, int] = (10, 200, 30), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(encoded: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).convert("RGB")
