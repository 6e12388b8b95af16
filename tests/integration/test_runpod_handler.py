"""The RunPod worker's handler over a real runtime (the simulator as ComfyUI, launched in-process on the runtime's
own thread, as `comfyui-api runpod` does): named media inputs, progress updates, cancellation, failures with
readable details, success_no_images and LOCAL_MODE."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyui_api.jobs.model import JobStatus
from comfyui_api.runpod.runtime_thread import RuntimeThread
from comfyui_api.runpod.worker import RunpodHandler, wait_ready
from comfyui_api.settings import Settings, load_settings
from tests.integration.server import image_graph, load_image_graph, make_server, png_bytes, sampler_graph

pytestmark = pytest.mark.simulator_only


class Progress:
    """Collects what the handler hands to runpod.serverless.progress_update (called from worker threads)."""

    def __init__(self) -> None:
        self.updates: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def __call__(self, job: Any, update: Any) -> None:
        with self._lock:
            self.updates.append((job["id"], dict(update)))


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("runpod-handler")
    return load_settings(make_server(root, step_seconds=0.03).env)


@pytest.fixture(scope="module")
def runtime(settings: Settings) -> Iterator[RuntimeThread]:
    thread = RuntimeThread(settings)
    thread.start()
    try:
        yield thread
    finally:
        thread.stop(10.0)


@pytest.fixture
def progress() -> Progress:
    return Progress()


@pytest.fixture
async def handler(runtime: RuntimeThread, settings: Settings, progress: Progress) -> RunpodHandler:
    await runtime.call(wait_ready(runtime.runtime, settings))
    return RunpodHandler(runtime, settings, progress=progress)


def _decoded(entry: dict[str, Any]) -> Image.Image:
    assert entry["type"] == "base64"
    return Image.open(io.BytesIO(base64.b64decode(entry["data"])))


def _two_loads(first: str, second: str) -> dict[str, Any]:
    graph = load_image_graph(first)
    graph["3"] = {"class_type": "LoadImage", "inputs": {"image": second}}
    graph["4"] = {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "second"}}
    return graph


async def test_images_videos_and_files_sent_by_name_are_what_the_graph_loads(
    handler: RunpodHandler, settings: Settings, media_url: str
) -> None:
    encoded = base64.b64encode(png_bytes((200, 10, 10))).decode()
    job_input = {
        "workflow": _two_loads("red.png", "green.png"),
        "images": [
            {"name": "red.png", "image": f"data:image/png;base64,{encoded}"},
            {"name": "green.png", "image": f"{media_url}/green.png"},
        ],
        "videos": [{"name": "clip.mp4", "video": base64.b64encode(b"\x00\x00\x00\x18ftypmp42" + bytes(64)).decode()}],
        "files": {"../notes.txt": base64.b64encode(b"hello").decode()},
    }
    body = await handler({"id": "named-inputs", "input": job_input})
    assert "error" not in body, body
    colours = sorted(_decoded(entry).convert("RGB").getpixel((0, 0)) for entry in body["images"])
    expected = sorted([(255 - 200, 255 - 10, 255 - 10), (10, 200, 30)])  # the first one inverted
    assert all(
        abs(a - b) <= 1 for got, want in zip(colours, expected, strict=True) for a, b in zip(got, want, strict=True)
    )
    assert {output["kind"] for output in body["outputs"]} == {"image"}
    assert body["stats"]["total_time"] > 0
    assert not (settings.comfy.input_dir / "named-inputs").exists()  # the job's inputs went with it
    assert not (settings.comfy.input_dir.parent / "notes.txt").exists()


async def test_a_bad_input_names_every_bad_field(handler: RunpodHandler) -> None:
    body = await handler(
        {"id": "bad", "input": {"workflow": {"nodes": [], "links": []}, "images": [{"name": "a.png"}], "x": 1}}
    )
    assert body["error"] == "invalid job input"
    details = "\n".join(body["details"])
    assert "Export (API)" in details and "images[0].image" in details and "x: unknown field" in details


async def test_a_rejected_workflow_comes_back_as_readable_lines(handler: RunpodHandler) -> None:
    graph = load_image_graph("missing-file.png")
    body = await handler({"id": "rejected", "input": {"workflow": graph}})
    assert body["error"]
    assert any(line.startswith("Node 1 (LoadImage):") for line in body["details"]), body


async def test_a_graph_without_files_is_success_no_images(handler: RunpodHandler) -> None:
    graph = {
        "1": {"class_type": "StringConcatenate", "inputs": {"string_a": "a", "string_b": "b", "delimiter": "-"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    body = await handler({"id": "text-only", "input": {"workflow": graph}})
    assert body["status"] == "success_no_images" and body["images"] == []
    assert body["texts"] == ["a-b"]


async def test_progress_is_reported_about_once_a_second(handler: RunpodHandler, progress: Progress) -> None:
    body = await handler({"id": "progress", "input": {"workflow": sampler_graph(80)}})  # 80 x 30 ms = 2.4 s
    assert len(body["images"]) == 1
    percents = [update["percent"] for job_id, update in progress.updates if job_id == "progress"]
    assert 1 <= len(percents) <= 4, percents
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)


async def test_a_job_shorter_than_a_second_sends_no_progress(handler: RunpodHandler, progress: Progress) -> None:
    body = await handler({"id": "quick", "input": {"workflow": image_graph()}})
    assert len(body["images"]) == 1
    assert [update for job_id, update in progress.updates if job_id == "quick"] == []


async def test_cancelling_the_handler_cancels_the_job(handler: RunpodHandler, runtime: RuntimeThread) -> None:
    task = asyncio.create_task(handler({"id": "cancel-me", "input": {"workflow": sampler_graph(2000)}}))
    service = runtime.runtime.jobs

    async def running() -> bool:
        try:
            return service.get("cancel-me").status == JobStatus.RUNNING
        except Exception:
            return False

    for _ in range(200):
        if await runtime.call(running()):
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async def ended() -> str:
        record = service.get("cancel-me")
        await asyncio.wait_for(record.wait(), 10)
        return record.status

    assert await runtime.call(ended()) == JobStatus.CANCELLED


async def test_local_mode_answers_without_comfyui(runtime: RuntimeThread, settings: Settings, tmp_path: Path) -> None:
    image = tmp_path / "girs.png"
    image.write_bytes(png_bytes((1, 2, 3)))
    handler = RunpodHandler(runtime, settings)
    body = await handler({"id": "local", "input": {"local": True, "local_image_path": str(image)}})
    assert body == {
        "images": [{"filename": "girs.png", "type": "base64", "data": base64.b64encode(image.read_bytes()).decode()}]
    }
