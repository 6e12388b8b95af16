"""The shipped image-to-image example end to end: the real server, the simulator as ComfyUI, a base64 input image
staged for LoadImage and encoded by VAEEncode, then sampled with denoise < 1. The simulator's rule keeps the input
colour at low denoise and is deterministic, so the answer can be checked pixel for pixel."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from tests.integration.server import CHECKPOINT, ServerProcess, decode_image, running_server

pytestmark = [
    pytest.mark.slow,
    pytest.mark.simulator_only(reason="checks the simulator's colour rule for img2img; random weights keep no colour"),
]

SHIPPED = Path(__file__).resolve().parents[2] / "manifests" / "workflows"
EXAMPLE = SHIPPED / "sdxl" / "img2img.json"
REQUEST_TIMEOUT_S = 30.0
RED, BLUE = (230, 20, 20), (20, 20, 230)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("img2img")
    shutil.copytree(SHIPPED, root / "workflows")
    yield from running_server(root, env={"WORKFLOW_DIR": str(root / "workflows")})


def png_base64(color: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> str:
    buffer = BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


async def post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        return await client.post(server.url(path), json=body)


async def run_workflow(server: ServerProcess, color: tuple[int, int, int], **inputs: Any) -> Image.Image:
    body = {"input": {"prompt": "an oil painting", "input_image": png_base64(color), "checkpoint": CHECKPOINT,
                      "seed": 11, "steps": 2, **inputs}}  # fmt: skip
    response = await post(server, "/workflow/sdxl/img2img", body)
    assert response.status_code == 200, response.text
    images = response.json()["images"]
    assert len(images) == 1
    return decode_image(images[0])


def channel_means(image: Image.Image) -> tuple[float, float, float]:
    red, green, blue = ImageStat.Stat(image.convert("RGB")).mean
    return red, green, blue


async def test_the_workflow_endpoint_redraws_the_input_image(server: ServerProcess) -> None:
    red = await run_workflow(server, RED, denoise=0.3)
    red_again = await run_workflow(server, RED, denoise=0.3)
    blue = await run_workflow(server, BLUE, denoise=0.3)
    assert red.size == blue.size == (64, 48)
    assert red.tobytes() == red_again.tobytes()
    red_r, _, red_b = channel_means(red)
    blue_r, _, blue_b = channel_means(blue)
    assert red_r > red_b + 50 and blue_b > blue_r + 50, (channel_means(red), channel_means(blue))
    assert not list(server.dirs.input.rglob("*.*")), "the staged input image was left behind"


async def test_full_denoise_no_longer_depends_on_the_input(server: ServerProcess) -> None:
    red = await run_workflow(server, RED, denoise=1.0)
    blue = await run_workflow(server, BLUE, denoise=1.0)
    assert red.tobytes() == blue.tobytes()


async def test_the_example_graph_runs_through_post_prompt(server: ServerProcess) -> None:
    graph = json.loads(EXAMPLE.read_text())
    graph["4"]["inputs"]["ckpt_name"] = CHECKPOINT
    graph["3"]["inputs"]["steps"] = 2
    graph["10"]["inputs"]["image"] = png_base64(BLUE, (70, 53))
    response = await post(server, "/prompt", {"prompt": graph, "id": "img2img-example"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"]["10"]["inputs"]["image"] == "img2img-example/10-image.png"
    image = decode_image(body["images"][0])
    assert image.size == (64, 48)  # VAEEncode crops to whole 8-pixel latent cells
    red, _, blue = channel_means(image)
    assert blue > red + 30  # denoise 0.7 (the example's) still leans towards the input
    assert not (server.dirs.input / "img2img-example").exists()
