"""The real server with a warmup graph (WARMUP_PROMPT_FILE): /ready waits for it, it runs again after ComfyUI
restarts, a failed warmup keeps /ready at 503, and with WARMUP_REQUIRED a failed warmup stops the server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server import TARGET, ServerProcess, image_graph, make_server, sampler_graph, wait_until

pytestmark = pytest.mark.slow

STEP_S = 0.05  # the simulator's; a real ComfyUI on a CPU takes a second or more a step
# Long enough to watch /ready wait for it; a real ComfyUI also loads its checkpoint first.
WARMUP_STEPS = TARGET.pick(simulator=40, real=2)
READY_TIMEOUT_S = TARGET.pick(simulator=60.0, real=300.0)


def warmup_file(tmp_path: Path, graph: dict[str, Any]) -> Path:
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps({"prompt": graph}))  # a POST /prompt body is accepted as well as a bare graph
    return path


async def ready(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(server.url("/ready"))
    return response.status_code, response.json()


async def watch_until_ready(server: ServerProcess, *, timeout_s: float = READY_TIMEOUT_S) -> list[str]:
    """Poll /ready until 200; returns every phase seen on the way."""
    phases: list[str] = []

    async def is_ready() -> bool:
        try:
            status, body = await ready(server)
        except httpx.TransportError:
            return False
        phases.append(body["phase"])
        return status == 200

    await wait_until(is_ready, timeout_s=timeout_s, interval_s=0.02)
    return phases


@pytest.fixture
def warm_server(tmp_path: Path) -> ServerProcess:
    env = {
        "WARMUP_PROMPT_FILE": str(warmup_file(tmp_path, sampler_graph(WARMUP_STEPS))),
        "ALWAYS_RESTART_COMFYUI": "true",
    }
    return make_server(tmp_path, env=env, step_seconds=STEP_S)


async def test_ready_waits_for_the_warmup_and_it_runs_again_after_a_restart(warm_server: ServerProcess) -> None:
    server = warm_server.start()
    try:
        phases = await watch_until_ready(server)
        assert "warmup" in phases
        assert phases.index("warmup") > 0 and phases[-1] == "ready"
        status, body = await ready(server)
        assert status == 200
        assert body["warmup"]["phase"] == "done" and body["warmup"]["run_count"] == 1
        assert body["warmup"]["duration_s"] >= WARMUP_STEPS * STEP_S
        assert body["queue_depth"] == 0

        server.kill_comfy()

        async def not_ready() -> bool:
            return (await ready(server))[0] == 503

        await wait_until(not_ready)
        phases = await watch_until_ready(server)
        assert "warmup" in phases
        status, body = await ready(server)
        assert body["warmup"] == {**body["warmup"], "phase": "done", "run_count": 2, "error": None}
        assert server.logs().count("warmup finished") == 2
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_failed_warmup_keeps_ready_at_503(tmp_path: Path) -> None:
    graph = sampler_graph(1)
    graph["4"]["inputs"]["ckpt_name"] = "not-installed.safetensors"
    server = make_server(tmp_path, env={"WARMUP_PROMPT_FILE": str(warmup_file(tmp_path, graph))}).start()
    try:

        async def warmup_failed() -> bool:
            try:
                return (await ready(server))[1]["phase"] == "warmup_failed"
            except httpx.TransportError:
                return False

        await wait_until(warmup_failed, timeout_s=30)
        await asyncio.sleep(0.5)
        status, body = await ready(server)
        assert status == 503 and body["status"] == "not_ready"
        assert body["warmup"]["phase"] == "failed"
        assert "not-installed.safetensors" in body["warmup"]["error"]
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(server.url("/health"))).status_code == 200  # alive, only not ready
        assert server.proc is not None and server.proc.poll() is None
    finally:
        await asyncio.to_thread(server.stop)


async def test_warmup_required_and_failed_stops_the_server(tmp_path: Path) -> None:
    graph = sampler_graph(1)
    graph["4"]["inputs"]["ckpt_name"] = "not-installed.safetensors"
    env = {"WARMUP_PROMPT_FILE": str(warmup_file(tmp_path, graph)), "WARMUP_REQUIRED": "true"}
    server = make_server(tmp_path, env=env).start()
    try:
        code = await asyncio.to_thread(server.wait_exit, 60)
        assert code != 0
        assert "WARMUP_REQUIRED is set and the warmup failed" in server.logs()
        assert server.comfy_processes() == []
    finally:
        await asyncio.to_thread(server.stop)


async def test_warmup_required_with_an_unreadable_graph_stops_the_server_before_comfyui_starts(tmp_path: Path) -> None:
    env = {"WARMUP_PROMPT_FILE": str(tmp_path / "missing.json"), "WARMUP_REQUIRED": "true"}
    server = make_server(tmp_path, env=env).start()
    try:
        code = await asyncio.to_thread(server.wait_exit, 60)
        assert code != 0
        assert "missing.json: cannot be read" in server.logs()
        assert "ComfyUI is ready" not in server.logs()
    finally:
        await asyncio.to_thread(server.stop)


@pytest.mark.simulator_only
@pytest.mark.parametrize(
    "profile",
    [("--comfyui-version", "0.3.64"), ("--comfyui-version", "0.33.0", "--reject-duplicate-prompt-ids")],
    ids=["comfyui-0.3.64", "comfyui-0.33-refusing-duplicate-ids"],
)
async def test_own_ids_resubmissions_and_warmup_on_every_comfyui_version(
    tmp_path: Path, profile: tuple[str, ...]
) -> None:
    """A caller's own id (not a UUID), the same id again, and the warmup (`warmup-<hex>` internally) all work where
    ComfyUI takes any prompt_id (0.3.64) and where it takes only fresh canonical UUIDs (0.33 with 0.38's 409 for a
    prompt_id seen before): ComfyUI's prompt_id is never the job id."""
    env = {"WARMUP_PROMPT_FILE": str(warmup_file(tmp_path, image_graph(0x101010)))}
    server = make_server(tmp_path, env=env, comfy_extra=profile).start()
    try:
        await asyncio.to_thread(server.wait_ready)
        status, body = await ready(server)
        assert (status, body["warmup"]["phase"]) == (200, "done")
        async with httpx.AsyncClient(timeout=30) as client:
            health = (await client.get(server.url("/health"))).json()
            assert health["comfyui_version"] == profile[1]
            names = []
            for _ in range(2):
                response = await client.post(
                    server.url("/prompt"), json={"prompt": image_graph(0x3366CC), "id": "first-image"}
                )
                assert response.status_code == 200, response.text
                assert response.json()["id"] == "first-image"
                names += response.json()["filenames"]
        assert names == ["first-image_test_00001_.png"] * 2  # ComfyUI's copy is removed once read
    finally:
        await asyncio.to_thread(server.stop)
