"""Image to image on the simulator: VAEEncode's object_info and pixels, and KSampler's denoise rule, driven through
the shipped example graph manifests/workflows/sdxl/img2img.json."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from comfyui_api.simulator.nodes import build_registry
from comfyui_api.simulator.paths import Folders
from comfyui_api.simulator.simulator import SIMULATOR_CHECKPOINT
from tests.unit.simulator.simulator_support import RunningSimulator, kinds, png_bytes, running_simulator

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "manifests" / "workflows" / "sdxl" / "img2img.json"
RECORDED = REPO / "tests" / "fixtures" / "real" / "object_info.json"
RED, BLUE = (230, 20, 20), (20, 20, 230)


def img2img_graph(image: str, prefix: str, seed: int = 42, denoise: float = 0.5, steps: int = 3) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads(EXAMPLE.read_text())
    graph["4"]["inputs"]["ckpt_name"] = SIMULATOR_CHECKPOINT
    graph["10"]["inputs"]["image"] = image
    graph["9"]["inputs"]["filename_prefix"] = prefix
    graph["3"]["inputs"].update(seed=seed, denoise=denoise, steps=steps)
    return graph


async def run(server: RunningSimulator, graph: dict[str, Any]) -> list[Any]:
    client = uuid.uuid4().hex
    async with server.websocket(client) as ws:
        answer = await server.post_prompt(graph, client)
        return await ws.until_done(answer["prompt_id"])


async def upload(server: RunningSimulator, name: str, color: tuple[int, int, int], size: tuple[int, int]) -> str:
    status, raw = await server.upload(name, png_bytes(color, size))
    assert status == 200, raw
    return str(json.loads(raw)["name"])


def saved(root: Path, prefix: str) -> np.ndarray:
    with Image.open(root / "output" / f"{prefix}_00001_.png") as img:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def test_object_info_entry_is_comfyuis(tmp_path: Path) -> None:
    folders = Folders.create(tmp_path, *(tmp_path / d for d in ("input", "output", "temp", "user", "models")))
    recorded = json.loads(RECORDED.read_text())["nodes"]["VAEEncode"]
    assert json.dumps(build_registry()["VAEEncode"].info(folders)) == json.dumps(recorded)


async def test_zero_denoise_keeps_the_input_colours_and_runs_no_step(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        red = await upload(server, "red.png", RED, (64, 48))
        frames = await run(server, img2img_graph(red, "kept", denoise=0.0))
    assert "execution_success" in kinds(frames)
    assert not [f for f in frames if isinstance(f, dict) and f["type"] == "progress"]
    pixels = saved(tmp_path, "kept")
    assert pixels.shape == (48, 64, 3)
    # VAEDecode is 60% the encoded colour and 40% texture averaging one half.
    mean = pixels.reshape(-1, 3).mean(axis=0)
    expected = 0.6 * np.asarray(RED, dtype=np.float32) / 255.0 + 0.2
    assert np.abs(mean - expected).max() < 0.03, (mean, expected)


async def test_partial_denoise_is_deterministic_and_follows_the_input(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        red = await upload(server, "red.png", RED, (64, 48))
        blue = await upload(server, "blue.png", BLUE, (64, 48))
        frames = await run(server, img2img_graph(red, "red_a", seed=5, denoise=0.3))
        await run(server, img2img_graph(red, "red_b", seed=5, denoise=0.3))
        await run(server, img2img_graph(red, "red_seed", seed=6, denoise=0.3))
        await run(server, img2img_graph(blue, "blue_a", seed=5, denoise=0.3))
    progress = [(f["data"]["value"], f["data"]["max"]) for f in frames if f["type"] == "progress"]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    red_a, red_b, red_seed, blue_a = (saved(tmp_path, p) for p in ("red_a", "red_b", "red_seed", "blue_a"))
    assert np.array_equal(red_a, red_b)
    assert not np.array_equal(red_a, red_seed)
    assert red_a[..., 0].mean() > red_a[..., 2].mean() + 0.2
    assert blue_a[..., 2].mean() > blue_a[..., 0].mean() + 0.2


async def test_full_denoise_ignores_the_input_as_txt2img_does(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        red = await upload(server, "red.png", RED, (64, 48))
        blue = await upload(server, "blue.png", BLUE, (64, 48))
        await run(server, img2img_graph(red, "red_full", seed=9, denoise=1.0))
        await run(server, img2img_graph(blue, "blue_full", seed=9, denoise=1.0))
        await run(server, img2img_graph(red, "red_most", seed=9, denoise=0.9))
    assert np.array_equal(saved(tmp_path, "red_full"), saved(tmp_path, "blue_full"))
    assert not np.array_equal(saved(tmp_path, "red_full"), saved(tmp_path, "red_most"))


async def test_odd_sizes_are_cropped_to_whole_latent_cells(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        odd = await upload(server, "odd.png", RED, (70, 53))
        await run(server, img2img_graph(odd, "odd"))
    assert saved(tmp_path, "odd").shape == (48, 64, 3)


async def test_an_image_smaller_than_one_latent_cell_fails_the_node(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        tiny = await upload(server, "tiny.png", RED, (4, 20))
        frames = await run(server, img2img_graph(tiny, "tiny"))
    error = next(f["data"] for f in frames if f["type"] == "execution_error")
    assert (error["node_id"], error["node_type"], error["exception_type"]) == ("11", "VAEEncode", "RuntimeError")
    assert "at least 8x8 pixels, got 4x20" in error["exception_message"]
