"""The real server process with the simulator (or, with COMFYUI_TEST_DIR, a real ComfyUI) as ComfyUI, over real
sockets: jobs, inputs, errors, interrupts, the informational routes, and nothing left on disk afterwards. One server
for the whole module."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from typing import Any

import httpx
import pytest

from tests.integration.server import (
    CHECKPOINT,
    TARGET,
    ServerProcess,
    comfy_queue,
    decode_image,
    image_graph,
    load_image_graph,
    png_bytes,
    rgb,
    sampler_graph,
    unkept_files,
    until_in_comfy_queue,
)

# A real ComfyUI on a CPU loads its checkpoint for ~12 s and takes seconds a sampler step.
REQUEST_TIMEOUT_S = TARGET.pick(simulator=30.0, real=300.0)
# A real ComfyUI notices an interrupt only between sampler steps or nodes: after a checkpoint load that has begun.
INTERRUPT_TAKES_S = TARGET.pick(simulator=5.0, real=60.0)


async def post_prompt(server: ServerProcess, body: dict[str, Any] | bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        if isinstance(body, bytes):
            return await client.post(server.url("/prompt"), content=body, headers={"content-type": "application/json"})
        return await client.post(server.url("/prompt"), json=body)


async def test_an_image_is_produced(server: ServerProcess) -> None:
    response = await post_prompt(server, {"prompt": image_graph(0x3366CC), "id": "first-image"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["id"] == "first-image"
    assert decode_image(body["images"][0]).getpixel((3, 3)) == rgb(0x3366CC)
    assert body["filenames"] == ["first-image_test_00001_.png"]
    assert body["outputs"] == [
        {
            "node_id": "9",
            "kind": "image",
            "filename": "first-image_test_00001_.png",
            "content_type": "image/png",
            "size_bytes": len(base64.b64decode(body["images"][0])),
        }
    ]
    assert body["prompt"]["9"]["inputs"]["filename_prefix"] == "first-image_test"
    stats = body["stats"]
    assert set(stats) == {"queue_wait", "comfy_execution", "preprocess_time", "comfy_round_trip_time",
                          "postprocess_time", "total_time"}  # fmt: skip
    assert set(stats["comfy_execution"]["nodes"]) == {"1", "9"}
    assert stats["total_time"] >= stats["comfy_round_trip_time"] > 0


async def test_identical_prompt_twice_produces_outputs_both_times(server: ServerProcess) -> None:
    graph = image_graph(0x00FF00)
    first = await post_prompt(server, {"prompt": graph})
    second = await post_prompt(server, {"prompt": graph})
    assert first.status_code == second.status_code == 200
    for response in (first, second):
        assert len(response.json()["images"]) == 1
        assert decode_image(response.json()["images"][0]).getpixel((0, 0)) == rgb(0x00FF00)
    assert first.json()["filenames"] != second.json()["filenames"]


async def test_same_id_resubmitted_after_completion_still_gets_its_file(server: ServerProcess) -> None:
    for _ in range(2):
        response = await post_prompt(server, {"prompt": image_graph(0x123456), "id": "reused-id"})
        assert response.status_code == 200, response.text
        assert len(response.json()["images"]) == 1


async def test_every_output_kind_comes_back(server: ServerProcess) -> None:
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 0x808080}},
        "2": {
            "class_type": "SaveAnimatedWEBP",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "anim",
                "fps": 6.0,
                "lossless": True,
                "quality": 80,
                "method": "default",
            },
        },
        "3": {
            "class_type": "SaveWEBM",
            "inputs": {"images": ["1", 0], "filename_prefix": "clip", "codec": "vp9", "fps": 6.0, "crf": 32.0},
        },
        "4": {"class_type": "EmptyAudio", "inputs": {"duration": 0.2, "sample_rate": 44100, "channels": 1}},
        "5": {"class_type": "SaveAudio", "inputs": {"audio": ["4", 0], "filename_prefix": "audio/sound"}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "SaveLatent", "inputs": {"samples": ["6", 0], "filename_prefix": "latents/lat"}},
        "8": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": "hello", "string_b": "world", "delimiter": " "},
        },
        "9": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}},
    }
    response = await post_prompt(server, {"prompt": graph})
    assert response.status_code == 200, response.text
    body = response.json()
    kinds = {(o["node_id"], o["kind"], o["content_type"]) for o in body["outputs"]}
    assert kinds == {
        ("2", "animated", "image/webp"),
        ("3", "video", "video/webm"),
        ("5", "audio", "audio/flac"),
        ("7", "latent", "application/octet-stream"),
    }
    assert len(body["images"]) == len(body["outputs"]) == len(body["filenames"])
    assert body["texts"] == ["hello world"]


async def test_preview_only_graph_returns_its_temp_image_every_time(server: ServerProcess) -> None:
    graph = image_graph(0x445566)
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    for _ in range(2):  # the second run would be served from ComfyUI's cache without the run marker
        response = await post_prompt(server, {"prompt": graph})
        assert response.status_code == 200, response.text
        assert decode_image(response.json()["images"][0]).getpixel((2, 2)) == rgb(0x445566)


async def test_twenty_concurrent_requests_never_mix_outputs(server: ServerProcess) -> None:
    colors = [0x0A0000 * (i + 1) + 0x000B00 * (20 - i) + 0x00000C * (i % 7) for i in range(20)]
    responses = await asyncio.gather(*(post_prompt(server, {"prompt": image_graph(c)}) for c in colors))
    assert [r.status_code for r in responses] == [200] * 20
    for color, response in zip(colors, responses, strict=True):
        images = response.json()["images"]
        assert len(images) == 1
        assert decode_image(images[0]).getpixel((5, 5)) == rgb(color)


@pytest.mark.parametrize("encoding", ["base64", "data-uri", "url"])
async def test_media_inputs_are_staged(server: ServerProcess, media_url: str, encoding: str) -> None:
    raw = png_bytes((10, 200, 30))
    value = {
        "base64": base64.b64encode(raw).decode(),
        "data-uri": "data:image/png;base64," + base64.b64encode(raw).decode(),
        "url": media_url + "/green.png",
    }[encoding]
    response = await post_prompt(server, {"prompt": load_image_graph(value), "id": f"staged-{encoding}"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["prompt"]["1"]["inputs"]["image"] == f"staged-{encoding}/1-image.png"
    pixel = decode_image(body["images"][0]).getpixel((1, 1))
    assert max(abs(a - b) for a, b in zip(pixel, (245, 55, 225), strict=True)) <= 1  # inverted (float rounding)
    assert not (server.dirs.input / f"staged-{encoding}").exists()


@pytest.mark.parametrize(
    ("case", "status", "kind", "field"),
    [
        ("malformed-json", 400, "invalid_request", None),
        ("unknown-field", 400, "invalid_request", "webhookk"),
        ("missing-prompt", 400, "invalid_request", "prompt"),
        ("too-large", 413, "payload_too_large", None),
        ("bad-base64", 400, "input_staging_failed", "prompt.1.inputs.image"),
        ("unknown-media-type", 400, "input_staging_failed", "prompt.1.inputs.image"),
        ("download-404", 400, "input_staging_failed", "prompt.1.inputs.image"),
        ("not-media-download", 400, "input_staging_failed", "prompt.1.inputs.image"),
    ],
)
async def test_bad_input_is_a_clear_4xx(server: ServerProcess, media_url: str, case, status, kind, field) -> None:
    body: dict[str, Any] | bytes = {
        "malformed-json": b'{"prompt": {',
        "unknown-field": {"prompt": image_graph(), "webhookk": "http://x"},
        "missing-prompt": {"id": "no-prompt"},
        "too-large": {"prompt": image_graph(), "id": "big", "padding": "x" * (1024 * 1024 + 10)},
        "bad-base64": {"prompt": load_image_graph("?" * 100)},
        "unknown-media-type": {"prompt": load_image_graph(base64.b64encode(b"just some text " * 8).decode())},
        "download-404": {"prompt": load_image_graph(media_url + "/missing.png")},
        "not-media-download": {"prompt": load_image_graph(media_url + "/notes.txt")},
    }[case]
    response = await post_prompt(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind
    assert error.get("field") == field
    assert error["message"]


async def test_rejected_graph_returns_comfyui_node_errors(server: ServerProcess) -> None:
    graph = image_graph()
    del graph["9"]["inputs"]["images"]
    response = await post_prompt(server, {"prompt": graph})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "workflow_rejected"
    assert body["node_errors"]["9"]["errors"][0]["type"] == "required_input_missing"
    assert body["node_errors"]["9"]["class_type"] == "SaveImage"


async def test_partially_valid_graph_is_rejected_and_not_run(server: ServerProcess) -> None:
    graph = image_graph(0xFF00FF, prefix="partial-good")
    graph["20"] = {"class_type": "ImageInvert", "inputs": {}}
    graph["21"] = {"class_type": "SaveImage", "inputs": {"images": ["20", 0], "filename_prefix": "partial-bad"}}
    response = await post_prompt(server, {"prompt": graph, "id": "partial"})
    assert response.status_code == 400, response.text
    assert response.json()["node_errors"]["20"]["dependent_outputs"] == ["21"]
    await asyncio.sleep(0.5)
    assert list(server.dirs.output.rglob("partial*")) == []
    assert (await comfy_queue(server.comfy_port)) == {"queue_running": [], "queue_pending": []}


async def test_runtime_failure_reports_the_node(server: ServerProcess) -> None:
    (server.dirs.input / "broken.png").write_bytes(b"this is not an image")
    try:
        response = await post_prompt(server, {"prompt": load_image_graph("broken.png")})
    finally:
        (server.dirs.input / "broken.png").unlink()
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["type"] == "execution_failed"
    details = error["details"]
    assert (details["node_id"], details["node_type"]) == ("1", "LoadImage")
    assert "UnidentifiedImageError" in details["exception_type"]
    assert details["traceback"] and details["exception_message"]


async def test_timeout_is_504_and_comfyui_is_freed(server: ServerProcess) -> None:
    started = time.monotonic()
    response = await post_prompt(server, {"prompt": sampler_graph(steps=1000), "timeout_s": 1})
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "timeout"
    assert time.monotonic() - started < 5
    follow_up = await post_prompt(server, {"prompt": image_graph(0x0000FF)})  # runs only once the slow one stopped
    assert follow_up.status_code == 200
    assert time.monotonic() - started < 5 + INTERRUPT_TAKES_S


async def test_interrupt_pending_and_running_jobs(server: ServerProcess) -> None:
    running = asyncio.create_task(post_prompt(server, {"prompt": sampler_graph(1000, seed=2), "id": "run-a"}))
    await until_in_comfy_queue(server.comfy_port, "run-a", "queue_running")
    pending = asyncio.create_task(post_prompt(server, {"prompt": sampler_graph(1000, seed=3), "id": "run-b"}))
    await until_in_comfy_queue(server.comfy_port, "run-b", "queue_pending")
    async with httpx.AsyncClient(timeout=10) as client:
        removed = await client.post(server.url("/interrupt"), json={"id": "run-b"})
        assert removed.json() == {"id": "run-b", "status": "removed"}
        interrupted = await client.post(server.url("/interrupt"), json={"id": "run-a"})
        assert interrupted.json() == {"id": "run-a", "status": "interrupted"}
        unknown = await client.post(server.url("/interrupt"), json={"id": "never-seen"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["field"] == "id"
    for task in (running, pending):
        response = await asyncio.wait_for(task, 5 + INTERRUPT_TAKES_S)
        assert response.status_code == 409
        assert response.json()["error"]["type"] == "cancelled"
    assert (await comfy_queue(server.comfy_port)) == {"queue_running": [], "queue_pending": []}


async def test_health_ready_models_and_docs(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        health = (await client.get(server.url("/health"))).json()
        assert (health["status"], health["comfyui"]) == ("healthy", "ready")
        if not TARGET.is_real:
            assert health["comfyui_version"] == "0.33.0"  # the simulator's default profile
        assert isinstance(health["comfyui_version"], str) and health["comfyui_version"]
        ready = await client.get(server.url("/ready"))
        assert ready.status_code == 200 and ready.json()["phase"] == "ready"
        models = (await client.get(server.url("/models"))).json()
        assert CHECKPOINT in models["checkpoints"]
        assert "loras" in models
        docs = await client.get(server.url("/docs"))
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        # Every asset the page loads is served here: /docs works with no internet.
        assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", docs.text)
        assert assets and all(url.startswith("/") and not url.startswith("//") for url in assets), assets
        for url in assets:
            asset = await client.get(server.url(url))
            assert asset.status_code == 200 and asset.content, url
        spec = (await client.get(server.url("/docs/openapi.json"))).json()
        assert {"/prompt", "/interrupt", "/health", "/ready", "/models"} <= set(spec["paths"])
        assert json.dumps(spec).count("node_errors") >= 1


async def test_no_files_left_behind(server: ServerProcess) -> None:
    """Runs last in this module: every staged input and ComfyUI output is gone; the only work files are the outputs
    the job records keep."""
    assert await unkept_files(server) == []
