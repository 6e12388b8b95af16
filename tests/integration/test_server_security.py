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

from tests.integration.server import REPO_ROOT, image_graph, make_server, running_server, wait_until

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
