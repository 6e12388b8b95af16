"""Secure by default, against the real server process: API keys (and their reload on SIGHUP), media names and
output prefixes that would reach outside ComfyUI's folders, and no silent fall-back to the simulator."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.server import REPO_ROOT, image_graph, make_server, running_server, sampler_graph, wait_until

pytestmark = pytest.mark.simulator_only


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("keyed")
    key_file = root / "api-keys"
    key_file.write_text("first-key\n")
    yield from running_server(root, env={"API_KEYS_FILE": str(key_file), "API_KEYS": "fixed-key"})


async def test_api_keys_guard_every_route_but_the_probes(keyed) -> None:
    async with httpx.AsyncClient(base_url=keyed.url(""), timeout=30) as client:
        assert (await client.get("/ready")).status_code == 200
        refused = await client.post("/prompt", json={"prompt": image_graph()})
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
        ok = await client.post("/prompt", json={"prompt": image_graph()}, headers={"x-api-key": "fixed-key"})
        assert ok.status_code == 200
        assert (await client.get("/jobs", headers={"authorization": "Bearer first-key"})).status_code == 200
    assert "first-key" not in keyed.logs() and "fixed-key" not in keyed.logs()


async def test_the_key_file_is_read_again_on_sighup(keyed) -> None:
    key_file = keyed.root / "api-keys"
    key_file.write_text("second-key\n")
    keyed.signal(signal.SIGHUP)

    async def rotated() -> bool:
        async with httpx.AsyncClient(base_url=keyed.url(""), timeout=10) as client:
            new = await client.get("/jobs", headers={"authorization": "Bearer second-key"})
            old = await client.get("/jobs", headers={"authorization": "Bearer first-key"})
            return new.status_code == 200 and old.status_code == 401

    await wait_until(rotated, timeout_s=10)


@pytest.mark.parametrize(
    ("node_input", "value"),
    [("image", "/etc/passwd"), ("image", "../../../etc/hostname"), ("image", "x_00001_.png [output]")],
)
async def test_media_names_outside_the_input_folder_are_a_400_naming_the_field(keyed, node_input, value) -> None:
    graph = image_graph()
    graph["5"] = {"class_type": "LoadImage", "inputs": {node_input: value}}
    graph["9"]["inputs"]["images"] = ["5", 0]
    async with httpx.AsyncClient(base_url=keyed.url(""), timeout=30, headers={"x-api-key": "fixed-key"}) as client:
        response = await client.post("/prompt", json={"prompt": graph})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == f"prompt.5.inputs.{node_input}"
    assert str(keyed.root) not in response.text and "/etc" not in error["message"]


async def test_a_wrong_comfy_home_exits_2_naming_it(tmp_path: Path) -> None:
    env = make_server(tmp_path).env
    env.pop("CMD")
    env["COMFY_HOME"] = str(tmp_path / "wrong")
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "comfyui_api"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 2 and "COMFY_HOME" in result.stderr


async def test_comfyui_dies_with_a_killed_server(tmp_path: Path) -> None:
    server = make_server(tmp_path).start()
    await asyncio.to_thread(server.wait_ready)
    [comfy] = [p for p in server.comfy_processes() if "comfyui_api.simulator" in " ".join(p.cmdline())]
    server.signal(signal.SIGKILL)
    await asyncio.to_thread(server.wait_exit)

    async def gone() -> bool:
        return not comfy.is_running() or comfy.status() == "zombie"

    await wait_until(gone, timeout_s=10)


async def test_a_port_already_taken_is_a_clear_error_not_our_comfyui(tmp_path: Path) -> None:
    squatter = await asyncio.start_server(lambda reader, writer: writer.close(), "127.0.0.1", 0)
    port = squatter.sockets[0].getsockname()[1]
    try:
        server = make_server(tmp_path)
        env = server.env | {"COMFYUI_PORT_HOST": str(port)}
        env["CMD"] = env["CMD"].replace(f"--port {server.comfy_port}", f"--port {port}")
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "comfyui_api"], cwd=REPO_ROOT, env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
    finally:
        squatter.close()
        await squatter.wait_closed()
    assert result.returncode != 0
    assert "COMFYUI_PORT_HOST" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_timed_out_job_leaves_nothing_in_comfyuis_folders(tmp_path: Path) -> None:
    server = make_server(tmp_path, step_seconds=0.1).start()
    try:
        await asyncio.to_thread(server.wait_ready)
        graph = sampler_graph(100, seed=11)  # ten seconds of sampling
        graph["20"] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 4, "color": 1}}
        graph["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "early"}}
        graph["22"] = {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}}
        async with httpx.AsyncClient(base_url=server.url(""), timeout=30) as client:
            response = await client.post("/prompt", json={"prompt": graph, "id": "too-slow", "timeout_s": 2})
            assert response.status_code == 504

            async def cleaned() -> bool:
                return server.dirs.files() == [] and "removed" in server.logs()

            await wait_until(cleaned, timeout_s=20)
        assert "job too-slow: removed" in server.logs()
    finally:
        await asyncio.to_thread(server.stop)


async def test_json_nested_990_deep_is_a_400_not_a_500(keyed) -> None:
    deep = "[" * 990 + "]" * 990
    body = '{"prompt": {"1": {"class_type": "X", "inputs": {"a": ' + deep + "}}}}"
    async with httpx.AsyncClient(base_url=keyed.url(""), timeout=30, headers={"x-api-key": "fixed-key"}) as client:
        response = await client.post("/prompt", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["field"] in ("body", "prompt.1.inputs.a")


async def test_a_stalled_comfyui_fails_its_jobs_turns_ready_off_and_is_restarted(tmp_path: Path) -> None:
    """A sampler step of 30 s stands in for a hung GPU call: work queued, no frame. With a 2 s stall timeout the job
    fails with a clear 503, /ready says so, and ALWAYS_RESTART_COMFYUI brings a fresh ComfyUI up."""
    env = {"COMFYUI_STALL_TIMEOUT_S": "2", "ALWAYS_RESTART_COMFYUI": "true"}
    server = make_server(tmp_path, env=env, step_seconds=30).start()
    try:
        await asyncio.to_thread(server.wait_ready)
        async with httpx.AsyncClient(base_url=server.url(""), timeout=60) as client:
            response = await client.post("/prompt", json={"prompt": sampler_graph(3, seed=5), "id": "hung"})
            assert response.status_code == 503, response.text
            assert "stalled" in response.json()["error"]["message"]
            assert "COMFYUI_STALL_TIMEOUT_S" in server.logs()

            async def ready_again() -> bool:
                return (await client.get("/ready")).status_code == 200

            await wait_until(ready_again, timeout_s=30)
        assert "killing the stalled ComfyUI" in server.logs()
    finally:
        await asyncio.to_thread(server.stop)
