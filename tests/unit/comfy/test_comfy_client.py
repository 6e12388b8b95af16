"""ComfyClient: status and error mapping (httpx.MockTransport), and real HTTP on loopback (aiohttp server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from comfyui_api.comfy.client import ComfyClient, QueuedPrompt
from comfyui_api.errors import ComfyProtocolError, ComfyUnavailable, WorkflowRejected

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
REJECTION = {
    "error": {
        "type": "prompt_outputs_failed_validation",
        "message": "Prompt outputs failed validation",
        "details": "",
        "extra_info": {},
    },
    "node_errors": {
        "2": {
            "errors": [
                {
                    "type": "required_input_missing",
                    "message": "Required input is missing",
                    "details": "image",
                    "extra_info": {"input_name": "image"},
                }
            ],
            "dependent_outputs": ["3"],
            "class_type": "ImageInvert",
        }
    },
}


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> ComfyClient:
    return ComfyClient("http://comfy.test", timeout_s=5, transport=httpx.MockTransport(handler))


async def test_queue_prompt_sends_ids_and_returns_queued_prompt() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"prompt_id": "job-1", "number": 26, "node_errors": {}})

    client = mock_client(handler)
    queued = await client.queue_prompt(GRAPH, prompt_id="job-1", client_id="c1", front=True, extra_data={"k": 1})
    await client.aclose()
    assert queued == QueuedPrompt("job-1", 26.0, {})
    assert seen == [{"prompt": GRAPH, "prompt_id": "job-1", "client_id": "c1", "front": True, "extra_data": {"k": 1}}]


async def test_queue_prompt_400_is_workflow_rejected_with_comfy_details() -> None:
    client = mock_client(lambda request: httpx.Response(400, json=REJECTION))
    with pytest.raises(WorkflowRejected) as caught:
        await client.queue_prompt(GRAPH, prompt_id="job-1", client_id=None)
    await client.aclose()
    error = caught.value
    assert error.comfy_error == REJECTION["error"]
    assert error.node_errors == REJECTION["node_errors"]
    assert "node 2 (ImageInvert): Required input is missing (image)" in error.message
    assert error.to_dict()["details"]["node_errors"] == REJECTION["node_errors"]


@pytest.mark.parametrize(
    ("body", "message_part"),
    [
        (b"", "ComfyUI rejected the workflow"),
        (json.dumps({"error": "old style error string", "node_errors": []}).encode(), "old style error string"),
        (json.dumps({"error": {"message": "Prompt has no outputs"}, "node_errors": {}}).encode(), "no outputs"),
    ],
)
async def test_queue_prompt_odd_400_bodies_still_reject(body: bytes, message_part: str) -> None:
    client = mock_client(lambda request: httpx.Response(400, content=body))
    with pytest.raises(WorkflowRejected, match=message_part):
        await client.queue_prompt(GRAPH, prompt_id="job-1", client_id=None)
    await client.aclose()


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (httpx.Response(500, text="500 Internal Server Error\n\nServer got itself in trouble"), ComfyUnavailable),
        (httpx.Response(502, text="bad gateway"), ComfyUnavailable),
        (httpx.Response(200, text="<html>not json</html>"), ComfyProtocolError),
        (httpx.Response(200, json=["not", "an", "object"]), ComfyProtocolError),
        (httpx.Response(403), ComfyProtocolError),
    ],
)
async def test_queue_prompt_error_mapping(response: httpx.Response, error: type[Exception]) -> None:
    client = mock_client(lambda request: response)
    with pytest.raises(error):
        await client.queue_prompt(GRAPH, prompt_id="job-1", client_id=None)
    await client.aclose()


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset")],
)
async def test_transport_failures_are_comfy_unavailable(failure: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    client = mock_client(handler)
    with pytest.raises(ComfyUnavailable):
        await client.get_history("x")
    assert await client.is_responding() is False
    await client.aclose()


async def test_unreachable_port_is_comfy_unavailable() -> None:
    client = ComfyClient("http://127.0.0.1:9", timeout_s=2)
    with pytest.raises(ComfyUnavailable, match="unreachable"):
        await client.system_stats()
    assert not await client.is_responding()
    await client.aclose()


async def test_history_and_models_shapes() -> None:
    entry = {"outputs": {"3": {"images": []}}, "status": {"status_str": "success", "completed": True}}

    def handler(request: httpx.Request) -> httpx.Response:
        routes: dict[str, httpx.Response] = {
            "/history/done": httpx.Response(200, json={"done": entry}),
            "/history/pending": httpx.Response(200, json={}),
            "/models": httpx.Response(200, json=["checkpoints", "loras"]),
            "/models/checkpoints": httpx.Response(200, json=["a.safetensors"]),
            "/models/nope": httpx.Response(404),
            "/object_info/SaveImage": httpx.Response(200, json={"SaveImage": {"output_node": True}}),
        }
        return routes.get(request.url.path, httpx.Response(404))

    client = mock_client(handler)
    assert await client.get_history("done") == entry
    assert await client.get_history("pending") is None
    assert await client.list_models() == ["checkpoints", "loras"]
    assert await client.list_models("checkpoints") == ["a.safetensors"]
    assert await client.list_models("nope") == []
    assert await client.object_info("SaveImage") == {"SaveImage": {"output_node": True}}
    with pytest.raises(ComfyProtocolError):
        await client.system_stats()  # 404
    await client.aclose()


class FakeComfyHttp:
    """Just enough of ComfyUI's HTTP API on loopback to exercise the client for real."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.queue_running: list[list[Any]] = []
        self.queue_pending: list[list[Any]] = []
        self.files: dict[tuple[str, str, str], bytes] = {}
        self.prompt_answer: tuple[int, Any] = (200, {"prompt_id": "p", "number": 1, "node_errors": {}})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/prompt", self.prompt)
        app.router.add_post("/queue", self.record)
        app.router.add_post("/interrupt", self.record)
        app.router.add_post("/history", self.record)
        app.router.add_get("/queue", self.queue)
        app.router.add_get("/view", self.view)
        app.router.add_get("/system_stats", self.system_stats)
        return app

    async def prompt(self, request: web.Request) -> web.Response:
        self.posts.append(("/prompt", await request.json()))
        status, body = self.prompt_answer
        return web.json_response(body, status=status)

    async def record(self, request: web.Request) -> web.Response:
        self.posts.append((request.path, await request.json()))
        return web.Response(status=200)

    async def queue(self, request: web.Request) -> web.Response:
        return web.json_response({"queue_running": self.queue_running, "queue_pending": self.queue_pending})

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"system": {"comfyui_version": "0.3.64"}, "devices": []})

    async def view(self, request: web.Request) -> web.StreamResponse:
        key = (request.query["filename"], request.query.get("subfolder", ""), request.query.get("type", "output"))
        if key not in self.files:
            return web.Response(status=404)
        data = self.files[key]
        response = web.StreamResponse()
        if key[0].startswith("truncated"):  # promise more than is sent, then drop the connection
            response.content_length = len(data) * 2
            await response.prepare(request)
            await response.write(data)
            assert request.transport is not None
            request.transport.close()
            return response
        await response.prepare(request)
        for start in range(0, len(data), 65536):
            await response.write(data[start : start + 65536])
        await response.write_eof()
        return response


@pytest.fixture
async def comfy_http() -> AsyncIterator[tuple[FakeComfyHttp, ComfyClient]]:
    fake = FakeComfyHttp()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    client = ComfyClient(f"http://127.0.0.1:{port}", timeout_s=5)
    yield fake, client
    await client.aclose()
    await runner.cleanup()


def item(number: float, prompt_id: str) -> list[Any]:
    return [number, prompt_id, {}, {"client_id": "c"}, ["9"]]


async def test_queue_position_sorts_the_heap(comfy_http: tuple[FakeComfyHttp, ComfyClient]) -> None:
    fake, client = comfy_http
    fake.queue_running = [item(57, "running")]
    fake.queue_pending = [item(-62, "front"), item(58, "a"), item(60, "c"), item(61, "d"), item(59, "b")]
    assert await client.queue_position("running") == 0
    assert await client.queue_position("front") == 1
    assert await client.queue_position("a") == 2
    assert await client.queue_position("b") == 3
    assert await client.queue_position("d") == 5
    assert await client.queue_position("gone") is None
    fake.queue_running = []
    assert await client.queue_position("front") == 0  # next in line


async def test_partial_acceptance_is_withdrawn_and_rejected(comfy_http: tuple[FakeComfyHttp, ComfyClient]) -> None:
    fake, client = comfy_http
    node_errors = {"4": REJECTION["node_errors"]["2"] | {"class_type": "SaveImage"}}
    fake.prompt_answer = (200, {"prompt_id": "job-7", "number": 39, "node_errors": node_errors})
    fake.queue_running = [item(39, "job-7")]  # it already started
    with pytest.raises(WorkflowRejected) as caught:
        await client.queue_prompt(GRAPH, prompt_id="job-7", client_id="c")
    assert caught.value.node_errors == node_errors
    assert "only part of the workflow" in caught.value.message
    assert fake.posts[1:] == [("/queue", {"delete": ["job-7"]}), ("/interrupt", {"prompt_id": "job-7"})]


async def test_partial_acceptance_still_pending_is_only_deleted(comfy_http: tuple[FakeComfyHttp, ComfyClient]) -> None:
    fake, client = comfy_http
    fake.prompt_answer = (200, {"prompt_id": "job-8", "number": 40, "node_errors": REJECTION["node_errors"]})
    with pytest.raises(WorkflowRejected):
        await client.queue_prompt(GRAPH, prompt_id="job-8", client_id="c")
    assert fake.posts[1:] == [("/queue", {"delete": ["job-8"]})]


async def test_queue_controls_post_what_comfyui_expects(comfy_http: tuple[FakeComfyHttp, ComfyClient]) -> None:
    fake, client = comfy_http
    await client.delete_from_queue(["a", "b"])
    await client.interrupt()
    await client.interrupt("a")
    await client.delete_history(["a"])
    assert fake.posts == [
        ("/queue", {"delete": ["a", "b"]}),
        ("/interrupt", {}),
        ("/interrupt", {"prompt_id": "a"}),
        ("/history", {"delete": ["a"]}),
    ]
    assert await client.is_responding()
    assert (await client.system_stats())["system"]["comfyui_version"] == "0.3.64"


async def test_download_output_streams_to_disk(comfy_http: tuple[FakeComfyHttp, ComfyClient], tmp_path: Path) -> None:
    fake, client = comfy_http
    payload = bytes(range(256)) * 12_000  # ~3 MB, several chunks
    fake.files[("job_00001_.png", "sub", "output")] = payload
    dest = tmp_path / "out.png"
    size = await client.download_output("job_00001_.png", "sub", "output", dest)
    assert size == len(payload)
    assert dest.read_bytes() == payload


async def test_download_of_missing_output_leaves_nothing(
    comfy_http: tuple[FakeComfyHttp, ComfyClient], tmp_path: Path
) -> None:
    _, client = comfy_http
    dest = tmp_path / "missing.png"
    with pytest.raises(ComfyProtocolError, match="status 404"):
        await client.download_output("missing.png", "", "output", dest)
    assert not dest.exists()


async def test_download_cut_off_midway_removes_the_partial_file(
    comfy_http: tuple[FakeComfyHttp, ComfyClient], tmp_path: Path
) -> None:
    fake, client = comfy_http
    fake.files[("truncated.mp4", "", "output")] = bytes(200_000)
    dest = tmp_path / "truncated.mp4"
    with pytest.raises(ComfyUnavailable, match=r"while downloading truncated\.mp4"):
        await client.download_output("truncated.mp4", "", "output", dest)
    assert not dest.exists()
