"""ComfyInstance against the bundled simulator (python -m comfyui_api.simulator): start, run a model-free graph,
restart after a crash, and survive a cut connection."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.comfy.events import (
    ComfyExited,
    ComfyMessage,
    Executed,
    Executing,
    ExecutionStart,
    ExecutionSuccess,
    Preview,
    StreamDisconnected,
    StreamReconnected,
    Subscription,
)
from comfyui_api.comfy.instance import ComfyInstance
from comfyui_api.comfy.process import ComfyProcess
from comfyui_api.settings import ComfySettings
from tests.servers.processes import free_port

WAIT_S = 20.0  # a safety net for a broken test, not a timing assertion
INVERT_GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": 3368652}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "sim/cap"}},
}
WEBSOCKET_IMAGE_GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 2, "color": 0}},
    "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
}

# ComfyUI >= 0.25 takes only canonical UUIDs as prompt_id.
JOB_INVERT = "bf81b37c-9fa9-463c-9137-bafda8c409b7"
JOB_WS_IMAGE = "0d9f3bf1-680d-4e50-99b7-2c22fbb5d283"
JOB_AFTER_CRASH = "eda1adae-fed7-4427-8cd5-81055ebf8694"
JOB_AFTER_CUT = "dd856093-7b33-4c66-8490-c8b42b3ecb34"


def simulator_cmd(home: Path, port: int) -> tuple[str, ...]:
    return (
        sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(port),
        "--input-directory", str(home / "input"), "--output-directory", str(home / "output"),
        "--temp-directory", str(home / "temp"), "--models-directory", str(home / "models"),
        "--base-directory", str(home),
    )  # fmt: skip


def simulator_settings(home: Path, **overrides: Any) -> ComfySettings:
    port = free_port()
    values: dict[str, Any] = {
        "cmd": simulator_cmd(home, port),
        "home": home,
        "port": port,
        "output_dir": home / "output",
        "startup_check_interval_s": 0.1,
        "startup_check_max_tries": 600,
        "http_timeout_s": 10.0,
    }
    values.update(overrides)
    return ComfySettings(**values)


async def until(sub: Subscription, kind: type[ComfyMessage]) -> list[ComfyMessage]:
    seen = []
    while True:
        seen.append(await sub.get(WAIT_S))
        if isinstance(seen[-1], kind):
            return seen


async def run_prompt(instance: ComfyInstance, prompt_id: str, graph: dict[str, Any]) -> list[ComfyMessage]:
    with instance.events.subscribe(prompt_id) as sub:
        await instance.client.queue_prompt(graph, prompt_id=prompt_id, client_id=instance.client_id)
        seen: list[ComfyMessage] = []
        while not (seen and isinstance(seen[-1], Executing) and seen[-1].node is None):
            seen.append(await sub.get(WAIT_S))
    return seen


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[ComfyInstance]:
    instance = ComfyInstance(simulator_settings(tmp_path, always_restart=True))
    await instance.start()
    yield instance
    await instance.stop(grace_s=10)


async def test_model_free_graph_runs_to_the_terminal_frame(simulator: ComfyInstance, tmp_path: Path) -> None:
    frames = await run_prompt(simulator, JOB_INVERT, INVERT_GRAPH)
    assert isinstance(frames[0], ExecutionStart)
    assert frames[-1] == Executing(JOB_INVERT, None)
    assert any(isinstance(m, ExecutionSuccess) for m in frames)
    executed = next(m for m in frames if isinstance(m, Executed))
    image = executed.output["images"][0]
    assert (image["subfolder"], image["type"]) == ("sim", "output")
    entry = await simulator.client.get_history(JOB_INVERT)
    assert entry is not None and entry["status"]["status_str"] == "success"
    dest = tmp_path / "downloaded.png"
    size = await simulator.client.download_output(image["filename"], image["subfolder"], "output", dest)
    assert dest.read_bytes() == (tmp_path / "output" / "sim" / image["filename"]).read_bytes()
    assert size == dest.stat().st_size > 0
    assert await simulator.client.queue_position(JOB_INVERT) is None


async def test_feature_flags_make_previews_carry_their_prompt(simulator: ComfyInstance) -> None:
    frames = await run_prompt(simulator, JOB_WS_IMAGE, WEBSOCKET_IMAGE_GRAPH)
    previews = [m for m in frames if isinstance(m, Preview)]
    assert len(previews) == 2
    assert all(p.raw_type == "preview_image_with_metadata" for p in previews)  # type 4: the handshake worked
    assert all(p.prompt_id == JOB_WS_IMAGE and p.content_type == "image/png" for p in previews)
    assert all(p.data.startswith(b"\x89PNG") for p in previews)


async def test_restart_after_kill(simulator: ComfyInstance) -> None:
    process = simulator.process
    assert process is not None and process.pid is not None
    watcher = simulator.events.subscribe(JOB_AFTER_CRASH)
    os.kill(process.pid, signal.SIGKILL)
    assert (await until(watcher, ComfyExited))[-1] == ComfyExited(-signal.SIGKILL)
    assert await simulator.wait_ready(WAIT_S)
    assert simulator.start_count == 2 and simulator.process is not process
    await until(watcher, StreamReconnected)
    watcher.close()
    frames = await run_prompt(simulator, JOB_AFTER_CRASH, INVERT_GRAPH)
    assert frames[-1] == Executing(JOB_AFTER_CRASH, None)


class CuttableProxy:
    """A TCP relay on loopback whose connections can all be cut at once (a network blip)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_cut_connection_reconnects_and_jobs_keep_working(tmp_path: Path) -> None:
    port = free_port()
    simulator_process = ComfyProcess(simulator_cmd(tmp_path, port), tmp_path)
    await simulator_process.start()
    proxy = CuttableProxy(port)
    proxy_port = await proxy.start()
    settings = ComfySettings(
        url=f"http://127.0.0.1:{proxy_port}", startup_check_interval_s=0.1, startup_check_max_tries=600
    )
    instance = ComfyInstance(settings)
    try:
        await instance.start()
        watcher = instance.events.subscribe(JOB_AFTER_CUT)
        proxy.cut()
        seen = await until(watcher, StreamReconnected)
        assert any(isinstance(m, StreamDisconnected) for m in seen)
        watcher.close()
        assert instance.events.connection_count == 2
        frames = await run_prompt(instance, JOB_AFTER_CUT, INVERT_GRAPH)
        assert frames[-1] == Executing(JOB_AFTER_CUT, None)
    finally:
        await instance.stop(grace_s=5)
        await proxy.close()
        await simulator_process.stop(grace_s=10)


@pytest.mark.parametrize(("version", "jobs_cancel"), [("0.33.0", True), ("0.3.64", False)])
async def test_features_are_learnt_from_the_running_comfyui(tmp_path: Path, version: str, jobs_cancel: bool) -> None:
    """The version comes from /system_stats, the output classes from /object_info, the jobs cancel route from a
    probe: never from a table keyed by version."""
    settings = simulator_settings(tmp_path)
    settings = dataclasses.replace(settings, cmd=(*settings.cmd, "--comfyui-version", version))
    instance = ComfyInstance(settings)
    await instance.start()
    try:
        features = instance.features
        assert (features.version, features.jobs_cancel) == (version, jobs_cancel)
        assert {"SaveImage", "PreviewAny", "SaveImageWebsocket"} <= features.output_classes
        if jobs_cancel:
            assert await instance.client.cancel_prompt(JOB_INVERT) is False  # unknown: nothing to cancel
    finally:
        await instance.stop(grace_s=10)


async def test_cancel_prompt_dequeues_a_pending_prompt(simulator: ComfyInstance) -> None:
    blocker, pending = str(uuid.uuid4()), str(uuid.uuid4())
    slow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 2048, "height": 2048, "batch_size": 8, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    await simulator.client.queue_prompt(slow, prompt_id=blocker, client_id=None)
    await simulator.client.queue_prompt(INVERT_GRAPH, prompt_id=pending, client_id=None)
    assert await simulator.client.queue_position(pending) == 1
    assert await simulator.client.cancel_prompt(pending) is True
    assert await simulator.client.queue_position(pending) is None
    assert await simulator.client.cancel_prompt(blocker) is True  # running: interrupted
