"""`/api/v1`, the FastAPI gateway's contract: every answer in its `{code, message, data}` envelope, business codes
for errors (1002 a workflow ComfyUI refused, 404 an unknown prompt, 400 a bad body), submit -> history -> download,
interrupt, queue status and clear, uploads, and download URLs on this server."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.integration.server import (
    CHECKPOINT,
    ServerProcess,
    load_image_graph,
    png_bytes,
    running_server,
    sampler_graph,
)

pytestmark = [pytest.mark.slow]


SHIPPED = Path(__file__).resolve().parents[2] / "manifests" / "workflows"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("gateway-v1")
    shutil.copytree(SHIPPED, root / "workflows")  # with the two scenarios the gateway ships
    yield from running_server(root, env={"WORKFLOW_DIR": str(root / "workflows")})


def call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    answer = httpx.request(method, server.url("/api/v1" + path), timeout=30, **kwargs)
    body = answer.json()
    assert set(body) == {"code", "message", "data"}, body
    return answer.status_code, body


def wait_for_outputs(server: ServerProcess, prompt_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = call(server, "GET", f"/workflows/{prompt_id}/history")
        if body["data"]["outputs"]:
            return dict(body["data"])
        time.sleep(0.1)
    raise AssertionError(f"{prompt_id} produced no outputs")


def test_upload_submit_history_and_download(server: ServerProcess) -> None:
    status, uploaded = call(server, "POST", "/images/upload", files={"file": ("cat.png", png_bytes(), "image/png")})
    assert (status, uploaded["code"]) == (200, 200)
    name = uploaded["data"]["name"]
    assert uploaded["data"]["local_path"] == f"input/{name}"
    status, submitted = call(server, "POST", "/workflows/submit", json={"workflow": load_image_graph(name)})
    assert (status, submitted["code"], submitted["message"]) == (200, 200, "success")
    prompt_id = submitted["data"]["prompt_id"]
    assert submitted["data"]["client_id"]
    history = wait_for_outputs(server, prompt_id)
    [image] = history["outputs"]["9"]["images"]
    _, link = call(server, "GET", "/images/url", params={"filename": image["filename"], "img_type": image["type"]})
    assert link["data"]["url"].startswith(server.base_url + "/api/v1/images/download?")
    downloaded = httpx.get(link["data"]["url"], timeout=10)
    assert downloaded.status_code == 200 and downloaded.content[:4] == b"\x89PNG"


def test_errors_carry_business_codes(server: ServerProcess) -> None:
    status, rejected = call(
        server, "POST", "/workflows/submit", json={"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}
    )
    assert (status, rejected["code"], rejected["data"]) == (400, 1002, None)
    status, bad = call(server, "POST", "/workflows/submit", json={"workflow": "not a graph"})
    assert (status, bad["code"]) == (400, 400) and "workflow" in bad["message"]
    status, unknown = call(server, "GET", "/workflows/no-such-prompt/history")
    assert (status, unknown["code"], unknown["data"]) == (404, 404, None)
    status, missing = call(server, "GET", "/images/download", params={"filename": "nope.png"})
    assert (status, missing["code"]) == (404, 404)


def test_interrupt_queue_status_and_clear(server: ServerProcess) -> None:
    _, running = call(server, "POST", "/workflows/submit", json={"workflow": sampler_graph(3000, seed=1)})
    _, waiting = call(server, "POST", "/workflows/submit", json={"workflow": sampler_graph(3000, seed=2)})
    _, queue = call(server, "GET", "/queue/status")
    ids = {item["prompt_id"] for item in queue["data"]["queue_running"] + queue["data"]["queue_pending"]}
    assert {running["data"]["prompt_id"], waiting["data"]["prompt_id"]} <= ids
    assert queue["data"]["running_count"] + queue["data"]["pending_count"] >= 2
    status, cleared = call(server, "POST", "/queue/clear", json={"clear": True})
    assert status == 200 and waiting["data"]["prompt_id"] in cleared["data"]["cleared"]
    _, stopped = call(server, "POST", "/workflows/interrupt", json={"prompt_id": running["data"]["prompt_id"]})
    assert stopped["data"]["interrupted"] is True
    status, refused = call(server, "POST", "/queue/clear", json={})
    assert (status, refused["code"]) == (400, 400)


async def test_the_websocket_takes_submissions_and_pings_and_relays_the_jobs_frames(server: ServerProcess) -> None:
    url = server.url("/api/v1/ws/client-7").replace("http://", "ws://")
    async with websockets.connect(url, open_timeout=10) as socket:

        async def received() -> dict[str, Any]:
            message = json.loads(await asyncio.wait_for(socket.recv(), timeout=30))
            assert isinstance(message, dict) and set(message) == {"type", "data"}, message
            return message

        assert await received() == {"type": "connected", "data": {"client_id": "client-7"}}
        await socket.send(json.dumps({"type": "ping"}))
        assert (await received())["type"] == "pong"
        await socket.send("not json")
        assert (await received())["type"] == "error"
        await socket.send(json.dumps({"type": "dance"}))
        assert "submit or ping" in (await received())["data"]["message"]
        await socket.send(json.dumps({"type": "submit", "data": {"workflow": {"1": {"class_type": "NoSuchNode"}}}}))
        refused = await received()
        assert refused["type"] == "submit_error" and refused["data"]["code"] == 1002, refused

        await socket.send(json.dumps({"type": "submit", "data": {"workflow": sampler_graph(3)}}))
        accepted = await received()
        assert accepted["type"] == "submit_success" and accepted["data"]["client_id"] == "client-7", accepted
        prompt_id = accepted["data"]["prompt_id"]
        seen: list[str] = []
        while True:  # ComfyUI's own frames for this client's job, to its end
            frame = await received()
            if frame["data"].get("prompt_id") == prompt_id:
                seen.append(frame["type"])
            if frame["type"] == "executing" and frame["data"].get("node") is None:
                break
        assert {"execution_start", "progress", "executed"} <= set(seen), seen
    assert wait_for_outputs(server, prompt_id), "the job the websocket submitted has its outputs in /history"


def test_both_scenarios_run_end_to_end_and_a_seed_of_minus_one_is_random(server: ServerProcess) -> None:
    picture = base64.b64encode(png_bytes((200, 30, 30), size=32)).decode()
    runs = {
        "text2img": {"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2, "seed": -1},
        "cpu_quickly": {"prompt": "a watercolour", "input_image": picture, "seed": 5},
    }
    for name, inputs in runs.items():
        code, body = call(server, "POST", f"/scenarios/{name}", json={**inputs, "checkpoint": CHECKPOINT})
        assert code == 200 and body["code"] == 200, body
        assert body["data"]["scenario"] == name and body["data"]["client_id"], body
        outputs = wait_for_outputs(server, body["data"]["prompt_id"])["outputs"]
        [images] = [output["images"] for output in outputs.values() if output.get("images")]
        image = httpx.get(server.url("/api/v1/images/download"), params={**images[0], "img_type": images[0]["type"]})
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        record = httpx.get(server.url(f"/jobs/{body['data']['prompt_id']}"), timeout=30).json()
        assert record["status"] == "completed", record

    code, body = call(server, "POST", "/scenarios/text2img", json={"prompt": "x", "steps": 0})
    assert (code, body["code"], body["data"]) == (400, 400, None) and body["message"].startswith("input.steps"), body
    code, body = call(server, "POST", "/scenarios/cpu_quickly", json={"prompt": "no image"})
    assert code == 400 and "input.input_image" in body["message"], body
    code, body = call(server, "POST", "/scenarios/nope", json={})
    assert (code, body["code"]) == (404, 404) and "no scenario named 'nope'" in body["message"], body
