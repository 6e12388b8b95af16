"""`/comfyui`: a client written for ComfyUI's own API (upload, /prompt with client_id, /ws, /history, /view) runs
unchanged with `http://host:port/comfyui` as its base URL; two such clients at once see only their own frames; a
refused graph answers as ComfyUI would; routes that change ComfyUI for everyone are refused, saying why."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from tests.integration.server import ServerProcess, load_image_graph, png_bytes, running_server, sampler_graph

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("comfy-gateway"))


class NativeComfyClient:
    """A ComfyUI API client as ComfyUI's own examples write one: it knows nothing of comfyui-api."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.client_id = uuid.uuid4().hex
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.frames: list[dict[str, Any]] = []

    def upload_file(self, name: str, data: bytes) -> str:
        answer = self.http.post(
            "/upload/image", files={"image": (name, data, "image/png")}, data={"overwrite": "false"}
        )
        answer.raise_for_status()
        return str(answer.json()["name"])

    def submit_workflow(self, graph: dict[str, Any]) -> str:
        answer = self.http.post("/prompt", json={"prompt": graph, "client_id": self.client_id})
        answer.raise_for_status()
        return str(answer.json()["prompt_id"])

    def run(self, graph: dict[str, Any]) -> dict[str, Any]:
        """Submit, wait on /ws for `executing` with node None, then read /history."""
        ws_url = self.base_url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        with connect(ws_url, open_timeout=10) as socket:
            prompt_id = self.submit_workflow(graph)
            while True:
                message = socket.recv(timeout=60)
                if not isinstance(message, str):
                    continue  # binary previews
                frame = json.loads(message)
                self.frames.append(frame)
                data = frame.get("data", {})
                if frame["type"] == "executing" and data.get("node") is None and data.get("prompt_id") == prompt_id:
                    break
        return self.http.get(f"/history/{prompt_id}").json()[prompt_id]

    def close(self) -> None:
        self.http.close()

    def download_file(self, filename: str, subfolder: str, folder_type: str) -> bytes:
        answer = self.http.get("/view", params={"filename": filename, "subfolder": subfolder, "type": folder_type})
        answer.raise_for_status()
        return answer.content


def test_a_native_client_runs_unchanged_through_the_door(server: ServerProcess) -> None:
    client = NativeComfyClient(server.url("/comfyui"))
    name = client.upload_file(f"green-{uuid.uuid4().hex[:6]}.png", png_bytes((10, 200, 30)))
    history = client.run(load_image_graph(name))
    assert history["status"]["status_str"] == "success"
    [image] = history["outputs"]["9"]["images"]
    picture = Image.open(io.BytesIO(client.download_file(image["filename"], image["subfolder"], image["type"])))
    pixel = picture.convert("RGB").getpixel((1, 1))
    assert max(abs(a - b) for a, b in zip(pixel, (245, 55, 225), strict=True)) <= 1  # inverted (float rounding)
    kinds = [frame["type"] for frame in client.frames]
    assert kinds[0] == "status" and client.frames[0]["data"]["sid"] == client.client_id
    assert {"execution_start", "executing", "executed", "execution_success"} <= set(kinds)
    assert client.http.get("/object_info/LoadImage").json()["LoadImage"]["category"]
    client.close()


def test_two_clients_at_once_see_only_their_own_frames(server: ServerProcess) -> None:
    clients = [NativeComfyClient(server.url("/comfyui")) for _ in range(2)]
    histories: dict[str, dict[str, Any]] = {}

    def run(client: NativeComfyClient, seed: int) -> None:
        histories[client.client_id] = client.run(sampler_graph(15, seed=seed))

    threads = [threading.Thread(target=run, args=(client, n)) for n, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    for client in clients:
        client.close()
    for client in clients:
        own = {history["prompt"][1] for history in [histories[client.client_id]]}
        seen = {frame["data"]["prompt_id"] for frame in client.frames if "prompt_id" in frame.get("data", {})}
        assert seen == own


def test_a_refused_graph_answers_as_comfyui_does(server: ServerProcess) -> None:
    answer = httpx.post(
        server.url("/comfyui/prompt"),
        json={"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}, "client_id": "x"},
        timeout=30,
    )
    assert answer.status_code == 400
    body = answer.json()
    assert set(body) == {"error", "node_errors"} and body["error"]["type"]
    escape = httpx.post(server.url("/comfyui/prompt"), json={"prompt": load_image_graph("/etc/passwd")}, timeout=30)
    assert escape.status_code == 400 and escape.json()["error"]["extra_info"]["field"] == "prompt.1.inputs.image"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/comfyui/free", {"unload_models": True}),
        ("POST", "/comfyui/queue", {"clear": True}),
        ("POST", "/comfyui/interrupt", {}),
        ("GET", "/comfyui/internal/logs", None),
        ("POST", "/comfyui/settings/x", {"a": 1}),
    ],
)
def test_routes_that_change_comfyui_for_everyone_are_refused(
    server: ServerProcess, method: str, path: str, body: dict[str, Any] | None
) -> None:
    answer = httpx.request(method, server.url(path), json=body, timeout=10)
    assert answer.status_code == 403
    assert "COMFYUI_PASSTHROUGH=full" in answer.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/comfyui/interrupt", "/comfyui/queue", "/comfyui/prompt"])
def test_a_body_that_is_not_json_is_a_400_naming_it(server: ServerProcess, path: str) -> None:
    answer = httpx.post(
        server.url(path), content=b"{not json", headers={"content-type": "application/json"}, timeout=10
    )
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.get("field", error.get("details")) == "body"


def test_read_only_routes_are_passed_on_and_their_answers_streamed_through(server: ServerProcess) -> None:
    through = httpx.get(server.url("/comfyui/object_info"), timeout=30)
    direct = httpx.get(f"http://127.0.0.1:{server.comfy_port}/object_info", timeout=30)
    assert through.status_code == 200 and through.headers["content-type"].startswith("application/json")
    assert through.json() == direct.json()
    one = httpx.get(server.url("/comfyui/object_info/SaveImage"), timeout=30).json()
    assert list(one) == ["SaveImage"]


@pytest.mark.parametrize("passthrough", ["off", "full"])
def test_the_door_can_be_closed_or_opened_to_every_route(
    tmp_path_factory: pytest.TempPathFactory, passthrough: str
) -> None:
    for server in running_server(
        tmp_path_factory.mktemp(f"door-{passthrough}"), env={"COMFYUI_PASSTHROUGH": passthrough}
    ):
        freed = httpx.post(server.url("/comfyui/free"), json={"unload_models": True}, timeout=10)
        stats = httpx.get(server.url("/comfyui/system_stats"), timeout=10)
        if passthrough == "off":
            assert (freed.status_code, stats.status_code) == (404, 404)
        else:  # passed on as it is: ComfyUI's own answer
            assert (freed.status_code, stats.status_code) == (200, 200)
            assert "system" in stats.json()
