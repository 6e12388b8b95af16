"""`ComfyUIClient` against a bare ComfyUI (the simulator on its own port) and against this server's `/comfyui` door:
upload -> submit -> wait (on /ws) -> download; a refused workflow raises with ComfyUI's node_errors; the async client
does the same by polling."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from comfyui_api.cli import main
from comfyui_api.client import ApiError
from comfyui_api.client.comfyui import AsyncComfyUIClient, ComfyUIClient
from comfyui_api.workflows.ui_format import ui_to_api
from tests.integration.server import (
    ComfyDirs,
    ServerProcess,
    load_image_graph,
    png_bytes,
    running_server,
    sampler_graph,
)
from tests.servers.processes import free_port, serve_on_port

pytestmark = [pytest.mark.slow, pytest.mark.simulator_only]


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("bare-comfyui")
    dirs = ComfyDirs(root)
    dirs.create()
    port = free_port()
    argv = [sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(dirs.input), "--output-directory", str(dirs.output),
            "--temp-directory", str(dirs.temp), "--models-directory", str(dirs.models),
            "--step-seconds", "0.01", "--base-directory", str(root)]  # fmt: skip
    with serve_on_port(argv, port=port, log_path=root / "simulator.log"):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("comfyui-client-door"))


def upload_submit_wait_download(base_url: str, tmp_path: Path) -> None:
    picture = tmp_path / "green.png"
    picture.write_bytes(png_bytes((10, 200, 30)))
    with ComfyUIClient(base_url) as comfy:
        name = comfy.upload_file(picture)["name"]
        [path] = comfy.run_workflow_and_download(load_image_graph(name), tmp_path / "out", timeout_s=60)
        pixel = Image.open(path).convert("RGB").getpixel((1, 1))
        assert max(abs(a - b) for a, b in zip(pixel, (245, 55, 225), strict=True)) <= 1  # inverted
        prompt_id = comfy.submit_workflow(sampler_graph(5))
        entry = comfy.wait_for_completion(prompt_id, timeout_s=60)
        assert entry["status"]["completed"] and comfy.get_status(prompt_id)["state"] == "done"
        with pytest.raises(ApiError) as refused:
            comfy.submit_workflow({"1": {"class_type": "NoSuchNode", "inputs": {}}})
        assert refused.value.status == 400


def test_against_a_bare_comfyui(comfyui: str, tmp_path: Path) -> None:
    upload_submit_wait_download(comfyui, tmp_path)


def test_against_the_comfyui_door(server: ServerProcess, tmp_path: Path) -> None:
    upload_submit_wait_download(server.url("/comfyui"), tmp_path)


async def test_the_async_client(comfyui: str, tmp_path: Path) -> None:
    async with AsyncComfyUIClient(comfyui) as comfy:
        picture = tmp_path / "blue.png"
        picture.write_bytes(png_bytes((0, 0, 255)))
        name = (await comfy.upload_file(picture))["name"]
        [path] = await comfy.run_workflow_and_download(load_image_graph(name), tmp_path, timeout_s=60)
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_workflow_convert_reads_the_node_definitions_through_the_door(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = Path(__file__).resolve().parents[1] / "fixtures" / "ui_workflows" / "image_sdxl_simple.json"
    with ComfyUIClient(server.url("/comfyui")) as comfy:
        definitions = comfy.object_info()
    assert main(["workflow", "convert", str(template), "--comfyui", server.url("/comfyui")]) == 0
    graph = json.loads(capsys.readouterr().out)
    assert graph == ui_to_api(json.loads(template.read_text()), definitions)
    assert {node["class_type"] for node in graph.values()} >= {"CheckpointLoaderSimple", "KSampler", "SaveImage"}
