"""`/comfyui`: a client written for ComfyUI's own API (upload, /prompt with client_id, /ws, /history, /view) runs
unchanged with `http://host:port/comfyui` as its base URL; two such clients at once see only their own frames;
images sent over the websocket arrive as ComfyUI's binary frames (type 1, or type 4 once negotiated); a refused graph
answers as ComfyUI would; read-only routes are passed on; routes that change ComfyUI for everyone are refused,
saying why (or passed on with COMFYUI_PASSTHROUGH=full; none with off)."""

from __future__ import annotations

import io
import json
import struct
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


def test_the_door_sends_the_frames_comfyui_sends(server: ServerProcess) -> None:
    """The same sampler job, once from ComfyUI itself and once through the door: the same kinds of frames, each
    step's `progress`, `execution_cached` right after `execution_start`, and the end as ComfyUI ends a run; every
    prompt id the door's client sees (inside `progress_state` too) is the one it was given."""
    runs: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for name, base_url, seed in (("comfyui", f"http://127.0.0.1:{server.comfy_port}", 11), ("door", "", 12)):
        client = NativeComfyClient(base_url or server.url("/comfyui"))
        history = client.run(sampler_graph(3, seed=seed))
        client.close()
        own = [frame for frame in client.frames if frame.get("data", {}).get("prompt_id") == history["prompt"][1]]
        runs[name] = (history["prompt"][1], own)
    kinds = {name: [frame["type"] for frame in frames] for name, (_, frames) in runs.items()}
    assert set(kinds["door"]) == set(kinds["comfyui"]), kinds
    for name, seen in kinds.items():
        assert seen[seen.index("execution_start") + 1] == "execution_cached", (name, seen)
        assert seen.count("progress") == 3, (name, seen)  # one a step
        assert seen[-2:] == ["execution_success", "executing"], (name, seen)
    prompt_id, frames = runs["door"]
    states = [frame["data"]["nodes"] for frame in frames if frame["type"] == "progress_state"]
    assert states and all(state["prompt_id"] == prompt_id for nodes in states for state in nodes.values())
    assert all(frame["data"]["value"] >= 1 for frame in frames if frame["type"] == "progress")  # no marks of ours


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


def _images_over_the_websocket(server: ServerProcess, *, negotiate: bool) -> tuple[str, list[bytes], list[dict]]:
    """ComfyUI's websocket-images example, as its clients write it: EmptyImage -> SaveImageWebsocket, binary frames
    collected while the `executing` node is the saving one. Returns the prompt id, the raw binary frames and the text
    frames (after the first `status`)."""
    graph = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 255}},
        "save_image_websocket_node": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    client_id = uuid.uuid4().hex
    ws_url = server.url("/comfyui").replace("http://", "ws://") + f"/ws?clientId={client_id}"
    binary: list[bytes] = []
    texts: list[dict] = []
    with connect(ws_url, open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "status"
        if negotiate:
            socket.send("not json: does not use up the first frame")
            socket.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            texts.append(json.loads(socket.recv(timeout=10)))
        answer = httpx.post(server.url("/comfyui/prompt"), json={"prompt": graph, "client_id": client_id}, timeout=30)
        prompt_id = answer.json()["prompt_id"]
        current_node = None
        while True:
            message = socket.recv(timeout=60)
            if isinstance(message, bytes):
                if current_node == "save_image_websocket_node":
                    binary.append(message)
                continue
            frame = json.loads(message)
            texts.append(frame)
            data = frame.get("data", {})
            if frame["type"] == "executing" and data.get("prompt_id") == prompt_id:
                if data["node"] is None:
                    break
                current_node = data["node"]
    return prompt_id, binary, texts


def test_images_sent_over_the_websocket_reach_the_client_as_comfyui_sends_them(server: ServerProcess) -> None:
    _, binary, _ = _images_over_the_websocket(server, negotiate=False)
    assert len(binary) == 1
    assert struct.unpack(">II", binary[0][:8]) == (1, 2)  # PREVIEW_IMAGE, PNG
    assert Image.open(io.BytesIO(binary[0][8:])).size == (64, 48)


def test_a_client_that_negotiates_gets_previews_with_their_metadata(server: ServerProcess) -> None:
    prompt_id, binary, texts = _images_over_the_websocket(server, negotiate=True)
    assert texts[0]["type"] == "feature_flags" and texts[0]["data"]["supports_preview_metadata"] is True
    assert len(binary) == 1
    kind, length = struct.unpack(">II", binary[0][:8])
    metadata = json.loads(binary[0][8 : 8 + length])
    assert kind == 4
    assert (metadata["prompt_id"], metadata["node_id"], metadata["image_type"]) == (
        prompt_id, "save_image_websocket_node", "image/png")  # fmt: skip
    assert Image.open(io.BytesIO(binary[0][8 + length :])).size == (64, 48)
