"""Attach mode: the real server with COMFYUI_URL pointing at a simulator it did not start, whose input, output and
temp folders are not the server's. Staged inputs reach ComfyUI through POST /upload/image and outputs come back
through /view; nothing of the job stays in the server's folders."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server import (
    ComfyDirs,
    ServerProcess,
    decode_image,
    load_image_graph,
    make_server,
    png_bytes,
    start_server,
)
from tests.servers.processes import free_port, serve_on_port

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 30.0
GREEN = (10, 200, 30)


@dataclass
class AttachedWorld:
    server: ServerProcess
    comfy: ComfyDirs  # the separately started simulator's folders


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AttachedWorld]:
    root = tmp_path_factory.mktemp("attach")
    comfy = ComfyDirs(root / "remote-comfy")
    comfy.create()
    port = free_port()
    argv = [sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(comfy.input), "--output-directory", str(comfy.output),
            "--temp-directory", str(comfy.temp), "--models-directory", str(comfy.models),
            "--step-seconds", "0.01", "--base-directory", str(root / "remote-comfy")]  # fmt: skip
    with serve_on_port(argv, port=port, log_path=root / "simulator.log"):
        server = start_server(root / "server", env={"COMFYUI_URL": f"http://127.0.0.1:{port}"})
        try:
            yield AttachedWorld(server, comfy)
        finally:
            server.stop()


async def post_prompt(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        return await client.post(server.url("/prompt"), json=body)


def staged_value(encoding: str, media_url: str) -> str:
    raw = png_bytes(GREEN)
    return {
        "base64": base64.b64encode(raw).decode(),
        "data-uri": "data:image/png;base64," + base64.b64encode(raw).decode(),
        "url": media_url + "/green.png",
    }[encoding]


def test_the_server_and_comfyui_do_not_share_folders(world: AttachedWorld) -> None:
    assert world.server.dirs.input != world.comfy.input
    assert world.server.comfy_processes() == []  # attached, not launched


@pytest.mark.parametrize("encoding", ["base64", "data-uri", "url"])
async def test_a_staged_input_reaches_the_remote_comfyui(world: AttachedWorld, media_url: str, encoding: str) -> None:
    job_id = f"attached-{encoding}"
    response = await post_prompt(world.server, {"prompt": load_image_graph(staged_value(encoding, media_url)),
                                                "id": job_id})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"]["1"]["inputs"]["image"] == f"{job_id}/1-image.png"
    pixel = decode_image(body["images"][0]).getpixel((1, 1))
    assert max(abs(a - (255 - b)) for a, b in zip(pixel, GREEN, strict=True)) <= 1  # inverted (float rounding)
    # The upload landed in ComfyUI's own input folder, where it stays: ComfyUI cannot delete inputs.
    assert (world.comfy.input / job_id / "1-image.png").read_bytes() == png_bytes(GREEN)
    assert not (world.server.dirs.input / job_id).exists()  # the local staged copy is gone
    assert world.server.dirs.files() == []


async def test_a_plain_file_name_is_passed_through_untouched(world: AttachedWorld) -> None:
    (world.comfy.input / "already-there.png").write_bytes(png_bytes(GREEN))
    response = await post_prompt(world.server, {"prompt": load_image_graph("already-there.png"), "id": "plain"})
    assert response.status_code == 200, response.text
    assert response.json()["prompt"]["1"]["inputs"]["image"] == "already-there.png"


async def test_attached_with_default_folders_nothing_is_written_under_comfy_home(
    world: AttachedWorld, tmp_path: Path
) -> None:
    comfy_home = tmp_path / "no-comfyui-here"
    server = make_server(tmp_path / "server", env={"COMFYUI_URL": world.server.env["COMFYUI_URL"]})
    for name in ("CMD", "INPUT_DIR", "OUTPUT_DIR", "TEMP_DIR", "MODEL_DIR"):
        server.env.pop(name)
    server.env["COMFY_HOME"] = str(comfy_home)
    server.start()
    try:
        server.wait_ready()
        body = {"prompt": load_image_graph(staged_value("base64", "")), "id": "attached-defaults"}
        response = await post_prompt(server, body)
        assert response.status_code == 200, response.text
        assert (world.comfy.input / "attached-defaults" / "1-image.png").is_file()
    finally:
        server.stop()
    assert not comfy_home.exists()
