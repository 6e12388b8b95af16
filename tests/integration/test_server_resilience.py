"""The real server when things go wrong around a job: ComfyUI killed mid-job (with and without restart), the
websocket cut mid-job, and SIGTERM while a job runs. Each test starts its own server, with the simulator or (with
COMFYUI_TEST_DIR) a real ComfyUI as its ComfyUI."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.proxy import TcpProxy
from tests.integration.server import (
    START_TIMEOUT_S,
    TARGET,
    ComfyDirs,
    ServerProcess,
    decode_image,
    free_port,
    image_graph,
    rgb,
    running_server,
    sampler_graph,
    start_server,
    until_in_comfy_queue,
    wait_until,
)

pytestmark = pytest.mark.slow

# A job that completes: a real ComfyUI on a CPU loads its checkpoint for ~12 s, then takes seconds a sampler step.
CUT_STEPS = TARGET.pick(simulator=60, real=2)
DRAIN_STEPS = TARGET.pick(simulator=100, real=2)
JOB_TAKES_S = TARGET.pick(simulator=15.0, real=240.0)
# Long enough for a job still running on the real ComfyUI at SIGTERM (a checkpoint load and its steps) to finish.
GRACE_ENV = TARGET.pick(simulator={}, real={"SHUTDOWN_GRACE_S": str(int(JOB_TAKES_S))})


async def post(server: ServerProcess, body: dict, timeout_s: float = JOB_TAKES_S + 15) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await client.post(server.url("/prompt"), json=body)


@pytest.fixture
def restarting_server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path, env={"ALWAYS_RESTART_COMFYUI": "true"})


async def test_comfyui_killed_mid_job_fails_fast_then_recovers(restarting_server: ServerProcess) -> None:
    server = restarting_server
    job = asyncio.create_task(post(server, {"prompt": sampler_graph(2000), "id": "doomed"}))
    await until_in_comfy_queue(server.comfy_port, "doomed")
    killed_at = time.monotonic()
    server.kill_comfy()
    response = await asyncio.wait_for(job, 10)
    assert time.monotonic() - killed_at < 5
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "comfyui_unavailable"
    assert int(response.headers["retry-after"]) > 0
    await asyncio.to_thread(server.wait_ready, START_TIMEOUT_S)
    again = await post(server, {"prompt": image_graph(0xAA5500)})
    assert again.status_code == 200, again.text
    assert decode_image(again.json()["images"][0]).getpixel((0, 0)) == rgb(0xAA5500)


async def test_comfyui_killed_without_restart_stops_the_server(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, tmp_path)
    try:
        server.kill_comfy()
        code = await asyncio.to_thread(server.wait_exit, 20)
        assert code != 0
        assert "will not be restarted" in server.logs()
    finally:
        server.stop()


@pytest.fixture
async def attached(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, TcpProxy]]:
    """A simulator started here, a TCP proxy in front of it, and a server attached through the proxy."""
    dirs = ComfyDirs(tmp_path / "comfy")
    dirs.create()
    comfy_port = free_port()
    command = TARGET.cmd(comfy_port, dirs, step_seconds=0.02)
    comfy = await asyncio.to_thread(
        subprocess.Popen, command, cwd=TARGET.home(dirs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with TcpProxy(comfy_port) as proxy:
            server = await asyncio.to_thread(
                start_server,
                tmp_path / "server",
                env={"COMFYUI_URL": f"http://127.0.0.1:{proxy.port}", "INPUT_DIR": str(dirs.input)},
            )
            server.comfy_port = comfy_port
            try:
                yield server, proxy
            finally:
                await asyncio.to_thread(server.stop)
    finally:
        comfy.terminate()
        await asyncio.to_thread(comfy.wait, 30)


async def test_websocket_cut_mid_job_still_completes(attached: tuple[ServerProcess, TcpProxy]) -> None:
    server, proxy = attached
    job = asyncio.create_task(post(server, {"prompt": sampler_graph(CUT_STEPS, seed=9), "id": "cut-ws"}))
    await until_in_comfy_queue(server.comfy_port, "cut-ws")
    assert await proxy.cut() >= 1  # at least the websocket
    response = await asyncio.wait_for(job, JOB_TAKES_S)
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 1
    assert "websocket lost" in server.logs()


async def test_sigterm_drains_in_flight_jobs_then_exits_zero(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, tmp_path, env=GRACE_ENV)
    try:
        job = asyncio.create_task(post(server, {"prompt": sampler_graph(DRAIN_STEPS), "id": "in-flight"}))
        await until_in_comfy_queue(server.comfy_port, "in-flight")
        comfy_pids = [process.pid for process in server.comfy_processes()]
        server.signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=5) as client:

            async def draining() -> bool:
                return (await client.get(server.url("/ready"))).json()["phase"] == "draining"

            await wait_until(draining, timeout_s=5, interval_s=0.02)
            assert (await client.get(server.url("/ready"))).status_code == 503
            refused = await client.post(server.url("/prompt"), json={"prompt": image_graph()})
            assert refused.status_code == 503 and "retry-after" in refused.headers
        response = await asyncio.wait_for(job, JOB_TAKES_S)
        assert response.status_code == 200, response.text
        assert await asyncio.to_thread(server.wait_exit, 20) == 0
        for pid in comfy_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        server.stop()


async def test_second_sigterm_cancels_running_jobs_and_still_stops_comfyui(tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, tmp_path)
    try:
        job = asyncio.create_task(post(server, {"prompt": sampler_graph(5000), "id": "too-long"}))
        await until_in_comfy_queue(server.comfy_port, "too-long")
        comfy_pids = [process.pid for process in server.comfy_processes()]
        server.signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        server.signal(signal.SIGTERM)
        response = await asyncio.wait_for(job, 10)
        assert response.status_code == 409
        assert "shutting down" in response.json()["error"]["message"]
        assert await asyncio.to_thread(server.wait_exit, 20) == 0
        for pid in comfy_pids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        server.stop()
