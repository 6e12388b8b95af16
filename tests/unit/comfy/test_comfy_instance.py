"""ComfyInstance end to end against a small fake ComfyUI process (tests/unit/comfy/fake_comfyui.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyui_api.comfy.events import (
    ComfyExited,
    ComfyMessage,
    Executed,
    Executing,
    StreamDisconnected,
    StreamReconnected,
    Subscription,
)
from comfyui_api.comfy.instance import ComfyInstance
from comfyui_api.comfy.process import ComfyProcess
from comfyui_api.errors import ComfyUnavailable
from comfyui_api.settings import ComfySettings
from tests.servers.processes import free_port

FAKE_COMFYUI = Path(__file__).with_name("fake_comfyui.py")
WAIT_S = 15.0  # a safety net for a broken test, not a timing assertion
GRAPH = {
    "1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
    "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
}


def make_settings(tmp_path: Path, **overrides: Any) -> ComfySettings:
    port = free_port()
    values: dict[str, Any] = {
        "cmd": (sys.executable, str(FAKE_COMFYUI), str(port)),
        "home": tmp_path,
        "port": port,
        "startup_check_interval_s": 0.05,
        "startup_check_max_tries": 600,
        "ws_idle_timeout_s": 30.0,
        "http_timeout_s": 5.0,
    }
    values.update(overrides)
    return ComfySettings(**values)


async def next_matching(sub: Subscription, kind: type[ComfyMessage]) -> list[ComfyMessage]:
    seen = []
    while True:
        message = await sub.get(WAIT_S)
        seen.append(message)
        if isinstance(message, kind):
            return seen


async def run_prompt(instance: ComfyInstance, prompt_id: str) -> list[ComfyMessage]:
    """Queue the model-free graph and collect its frames up to the terminal one."""
    with instance.events.subscribe(prompt_id) as sub:
        queued = await instance.client.queue_prompt(GRAPH, prompt_id=prompt_id, client_id=instance.client_id)
        assert queued.prompt_id == prompt_id
        seen = []
        while not (seen and isinstance(seen[-1], Executing) and seen[-1].node is None):
            seen.append(await sub.get(WAIT_S))
    return seen


async def test_start_run_and_stop(tmp_path: Path) -> None:
    became_ready = asyncio.Event()
    instance = ComfyInstance(make_settings(tmp_path), on_ready=became_ready.set)
    assert instance.phase == "starting" and not instance.is_ready
    await instance.start()
    try:
        assert instance.is_ready and instance.phase == "ready" and instance.start_count == 1
        assert instance.ws_url == f"ws://127.0.0.1:{instance.settings.port}/ws"
        assert instance.events.connected
        await asyncio.wait_for(became_ready.wait(), WAIT_S)
        frames = await run_prompt(instance, "job-1")
        assert [type(m).__name__ for m in frames][:2] == ["ExecutionStart", "ExecutionCached"]
        assert Executed("job-1", "2", {"text": ["hello"]}) in frames
        entry = await instance.client.get_history("job-1")
        assert entry is not None and entry["outputs"]["2"] == {"text": ["hello"]}
        process = instance.process
        assert process is not None and process.running
    finally:
        await instance.stop(grace_s=5)
    assert instance.phase == "stopped" and not instance.is_ready
    assert not process.running


async def test_restarts_after_a_crash_with_always_restart(tmp_path: Path) -> None:
    ready_counts: asyncio.Queue[int] = asyncio.Queue()
    instance = ComfyInstance(make_settings(tmp_path, always_restart=True))
    instance.add_ready_callback(lambda: ready_counts.put_nowait(instance.start_count))
    await instance.start()
    try:
        assert await asyncio.wait_for(ready_counts.get(), WAIT_S) == 1
        in_flight = instance.events.subscribe("job-in-flight")
        assert instance.process is not None and instance.process.pid is not None
        first_pid = instance.process.pid
        os.kill(first_pid, signal.SIGKILL)
        exited = (await next_matching(in_flight, ComfyExited))[-1]
        assert exited == ComfyExited(-signal.SIGKILL)
        assert await asyncio.wait_for(ready_counts.get(), WAIT_S) == 2
        assert instance.is_ready and instance.start_count == 2
        assert instance.process.pid != first_pid
        assert await instance.events.wait_connected(WAIT_S)
        assert StreamReconnected() in await next_matching(in_flight, StreamReconnected)
        frames = await run_prompt(instance, "job-after-restart")
        assert Executed("job-after-restart", "2", {"text": ["hello"]}) in frames
    finally:
        await instance.stop(grace_s=5)


async def test_exit_without_always_restart_is_fatal(tmp_path: Path) -> None:
    fatal_codes: asyncio.Queue[int | None] = asyncio.Queue()
    instance = ComfyInstance(make_settings(tmp_path, always_restart=False), on_fatal=fatal_codes.put_nowait)
    await instance.start()
    try:
        sub = instance.events.subscribe("job-1")
        assert instance.process is not None and instance.process.pid is not None
        os.kill(instance.process.pid, signal.SIGTERM)  # a clean exit (code 0) is just as fatal
        returncode = await asyncio.wait_for(fatal_codes.get(), WAIT_S)
        assert returncode == instance.process.returncode == 0
        assert (await next_matching(sub, ComfyExited))[-1] == ComfyExited(returncode)
        assert instance.phase == "failed" and not instance.is_ready
        assert instance.start_count == 1
    finally:
        await instance.stop(grace_s=5)


async def test_websocket_drop_reconnects_and_jobs_keep_working(tmp_path: Path) -> None:
    instance = ComfyInstance(make_settings(tmp_path))
    await instance.start()
    try:
        sub = instance.events.subscribe("job-2")
        async with httpx.AsyncClient(base_url=instance.settings.base_url, timeout=5) as http:
            assert (await http.post("/test/drop_ws")).status_code == 200
        seen = await next_matching(sub, StreamReconnected)
        assert any(isinstance(m, StreamDisconnected) for m in seen)
        sub.close()
        assert instance.events.connection_count == 2
        frames = await run_prompt(instance, "job-2")
        assert Executed("job-2", "2", {"text": ["hello"]}) in frames
    finally:
        await instance.stop(grace_s=5)


async def test_attach_mode_launches_nothing(tmp_path: Path) -> None:
    port = free_port()
    external = ComfyProcess([sys.executable, str(FAKE_COMFYUI), str(port)], tmp_path)
    await external.start()
    settings = ComfySettings(
        url=f"http://127.0.0.1:{port}/", startup_check_interval_s=0.05, startup_check_max_tries=600
    )
    instance = ComfyInstance(settings)
    try:
        await instance.start()
        assert instance.process is None and instance.is_ready
        frames = await run_prompt(instance, "job-3")
        assert frames[-1] == Executing("job-3", None)
        await instance.stop(grace_s=5)
        assert external.running  # attaching never stops someone else's ComfyUI
    finally:
        await external.stop(grace_s=5)


async def test_start_fails_clearly_when_comfyui_dies(tmp_path: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nprint('missing torchvision', flush=True)\nsys.exit(2)\n")
    instance = ComfyInstance(make_settings(tmp_path, cmd=(sys.executable, str(crash))))
    with pytest.raises(ComfyUnavailable, match="missing torchvision"):
        await instance.start()
    assert instance.phase == "failed"
    await instance.stop()


async def test_attach_to_nothing_fails_after_the_tries(tmp_path: Path) -> None:
    settings = ComfySettings(url="http://127.0.0.1:9", startup_check_interval_s=0.01, startup_check_max_tries=3)
    instance = ComfyInstance(settings)
    with pytest.raises(ComfyUnavailable, match="did not answer within 3 checks"):
        await instance.start()
    await instance.stop()
