"""Staging for a ComfyUI that cannot see the server's input folder: a real simulator process with its own
--input-directory receives the staged files through POST /upload/image and runs the job from them."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.errors import ComfyUnavailable, WorkflowRejected
from comfyui_api.jobs.staging import InputStager
from comfyui_api.settings import JobSettings
from tests.servers.processes import free_port, serve_on_port

WAIT_S = 20.0  # a safety net for a broken test, not a timing assertion
COLOR = (200, 40, 10)


def png_bytes(color: tuple[int, int, int] = COLOR) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 8), color).save(buffer, format="PNG")
    return buffer.getvalue()


def load_image_graph(value: object) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": value}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "uploaded"}},
    }


@dataclass
class RemoteComfy:
    client: ComfyClient
    input_dir: Path  # ComfyUI's
    output_dir: Path


@pytest.fixture(scope="module")
def comfy_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    root = tmp_path_factory.mktemp("remote-comfy")
    port = free_port()
    argv = [sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(port),
            "--input-directory", str(root / "input"), "--output-directory", str(root / "output"),
            "--temp-directory", str(root / "temp"), "--models-directory", str(root / "models"),
            "--base-directory", str(root)]  # fmt: skip
    with serve_on_port(argv, port=port, log_path=root / "simulator.log"):
        yield port, root


@pytest.fixture
async def comfy(comfy_process: tuple[int, Path]) -> AsyncIterator[RemoteComfy]:
    port, root = comfy_process
    client = ComfyClient(f"http://127.0.0.1:{port}", timeout_s=10.0)
    try:
        yield RemoteComfy(client, root / "input", root / "output")
    finally:
        await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


async def finished(client: ComfyClient, prompt_id: str) -> dict[str, Any]:
    """ComfyUI's history entry of prompt_id, once it has one."""
    async with asyncio.timeout(WAIT_S):
        while True:
            entry = await client.get_history(prompt_id)
            if entry is not None:
                return entry
            await asyncio.sleep(0.05)


async def test_staged_inputs_are_uploaded_and_the_job_runs_from_them(
    tmp_path: Path, comfy: RemoteComfy, http: httpx.AsyncClient
) -> None:
    local_input = tmp_path / "server-input"
    stager = InputStager(JobSettings(), local_input, http=http, uploader=comfy.client)
    raw = png_bytes()
    graph, staged = await stager.stage("job-up", load_image_graph(base64.b64encode(raw).decode()))
    assert graph["1"]["inputs"]["image"] == "job-up/1-image.png"
    assert [s.value for s in staged] == ["job-up/1-image.png"]
    assert (comfy.input_dir / "job-up" / "1-image.png").read_bytes() == raw
    assert (local_input / "job-up" / "1-image.png").read_bytes() == raw  # the local copy lives until cleanup

    queued = await comfy.client.queue_prompt(graph, prompt_id=str(uuid.uuid4()), client_id=None)
    entry = await finished(comfy.client, queued.prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    saved = entry["outputs"]["9"]["images"][0]
    with Image.open(comfy.output_dir / saved["subfolder"] / saved["filename"]) as image:
        pixel = image.convert("RGB").getpixel((3, 3))
    assert max(abs(a - (255 - b)) for a, b in zip(pixel, COLOR, strict=True)) <= 1  # inverted (float rounding)

    stager.cleanup("job-up")
    assert not (local_input / "job-up").exists()
    assert (comfy.input_dir / "job-up" / "1-image.png").exists()  # ComfyUI has no route to delete inputs


async def test_without_the_upload_the_remote_comfyui_cannot_find_the_input(
    tmp_path: Path, comfy: RemoteComfy, http: httpx.AsyncClient
) -> None:
    stager = InputStager(JobSettings(), tmp_path / "server-input", http=http)
    graph, _ = await stager.stage("job-local", load_image_graph(base64.b64encode(png_bytes()).decode()))
    with pytest.raises(WorkflowRejected, match=re.escape("Invalid image file: job-local/1-image.png")):
        await comfy.client.queue_prompt(graph, prompt_id=str(uuid.uuid4()), client_id=None)
    stager.cleanup("job-local")


async def test_a_list_of_images_is_uploaded_into_the_jobs_folder(
    tmp_path: Path, comfy: RemoteComfy, http: httpx.AsyncClient
) -> None:
    stager = InputStager(JobSettings(), tmp_path / "server-input", http=http, uploader=comfy.client)
    images = [base64.b64encode(png_bytes(color)).decode() for color in ((1, 2, 3), (4, 5, 6))]
    graph = {"3": {"class_type": "VHS_LoadImages", "inputs": {"directory": images}}}
    staged_graph, staged = await stager.stage("job-list", graph)
    assert staged_graph["3"]["inputs"]["directory"] == "job-list/3-directory"
    assert [s.value for s in staged] == ["job-list/3-directory/0000.png", "job-list/3-directory/0001.png"]
    uploaded = comfy.input_dir / "job-list" / "3-directory"
    assert [p.read_bytes() for p in sorted(uploaded.iterdir())] == [png_bytes((1, 2, 3)), png_bytes((4, 5, 6))]
    stager.cleanup("job-list")


async def test_an_unreachable_comfyui_fails_staging_naming_the_input(tmp_path: Path, http: httpx.AsyncClient) -> None:
    gone = ComfyClient(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    stager = InputStager(JobSettings(), tmp_path / "server-input", http=http, uploader=gone)
    try:
        with pytest.raises(ComfyUnavailable) as caught:
            await stager.stage("job-gone", load_image_graph(base64.b64encode(png_bytes()).decode()))
    finally:
        await gone.aclose()
    assert caught.value.field == "prompt.1.inputs.image"
    stager.cleanup("job-gone")
    assert not (tmp_path / "server-input" / "job-gone").exists()
