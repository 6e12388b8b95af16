"""`ComfyUIClient` / `AsyncComfyUIClient`: a client for a bare ComfyUI (or this server's `/comfyui` door), with the
methods people write for ComfyUI's API: upload a file, submit a workflow, read its status, wait for it (on `/ws`
when the `websockets` package is installed, else by polling `/history`), download its outputs. httpx only
otherwise.

    with ComfyUIClient("http://127.0.0.1:8188") as comfy:
        name = comfy.upload_file("cat.png")["name"]
        graph["10"]["inputs"]["image"] = name
        paths = comfy.run_workflow_and_download(graph, "out/")
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from comfyui_api.client.errors import ApiError, JobFailed, ServerUnreachable

_POLL_INTERVAL_S = 0.5
_WS_RECV_TIMEOUT_S = 30.0  # then /history is checked: a missed frame never leaves a wait hanging


def _raise_for(response: httpx.Response, what: str) -> Any:
    """The JSON of a 2xx answer; an ApiError (with ComfyUI's `node_errors` in `details`) otherwise."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code < 400:
        return body
    error = ApiError.from_body(response.status_code, body)
    node_errors = body.get("node_errors") if isinstance(body, Mapping) else None
    details = {"node_errors": node_errors} if node_errors else None
    raise ApiError(error.status, error.type, f"{what}: {error.message}", details=details, body=body)


def _prompt_id(answer: Mapping[str, Any]) -> str:
    """POST /prompt's answer: its prompt id, or an ApiError carrying `node_errors` when ComfyUI refused part of it."""
    if answer.get("node_errors"):
        raise ApiError(
            400, "node_errors", "ComfyUI refused the workflow", details={"node_errors": answer["node_errors"]}
        )
    return str(answer["prompt_id"])


def _outcome(prompt_id: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """A finished history entry; JobFailed when ComfyUI reports an error."""
    status = entry.get("status") or {}
    if status.get("status_str") == "error":
        messages = [m for m in status.get("messages") or () if isinstance(m, list) and m and m[0] == "execution_error"]
        detail = messages[-1][1] if messages else {}
        raise JobFailed(
            prompt_id,
            500,
            str(detail.get("exception_type") or "execution_error"),
            str(detail.get("exception_message") or "ComfyUI reported an error"),
            details=dict(detail),
        )
    return dict(entry)


def output_files(entry: Mapping[str, Any]) -> list[dict[str, str]]:
    """Every file a history entry lists (images, gifs, videos, audio, ...): `{filename, subfolder, type}`."""
    found = []
    for node_output in (entry.get("outputs") or {}).values():
        for items in node_output.values():
            for item in items if isinstance(items, list) else ():
                if isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                    found.append(
                        {
                            "filename": item["filename"],
                            "subfolder": item.get("subfolder", ""),
                            "type": item.get("type", "output"),
                        }
                    )
    return found


class ComfyUIClient:
    """A bare ComfyUI at `base_url` (e.g. http://127.0.0.1:8188, or http://host:3000/comfyui)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8188",
        *,
        timeout_s: float = 30.0,
        client_id: str | None = None,
        api_key: str | None = None,
    ):
        """`api_key`: for a comfyui-api server's `/comfyui` door when it has API_KEYS (sent as X-API-Key)."""
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def __enter__(self) -> ComfyUIClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc
        return _raise_for(response, f"{method} {path}")

    def upload_file(self, path: str | Path, *, subfolder: str = "", overwrite: bool = False) -> dict[str, Any]:
        """Upload into ComfyUI's input folder; `{name, subfolder, type}` (use `name` in a loader node)."""
        file = Path(path)
        with file.open("rb") as handle:
            fields = {"subfolder": subfolder, "overwrite": "true" if overwrite else "false", "type": "input"}
            return dict(self._call("POST", "/upload/image", files={"image": (file.name, handle)}, data=fields))

    def object_info(self) -> dict[str, Any]:
        """Every node type ComfyUI knows, with its inputs (what converting an editor-saved workflow needs)."""
        return dict(self._call("GET", "/object_info"))

    def submit_workflow(self, workflow: Mapping[str, Any]) -> str:
        """Queue an API-format graph; its prompt id. ApiError (with `details["node_errors"]`) when refused."""
        return _prompt_id(self._call("POST", "/prompt", json={"prompt": dict(workflow), "client_id": self.client_id}))

    def get_status(self, prompt_id: str) -> dict[str, Any]:
        """`{"state": "pending" | "running" | "done", "history": entry or None}`."""
        history = self._call("GET", f"/history/{prompt_id}")
        if prompt_id in history:
            return {"state": "done", "history": history[prompt_id]}
        queue = self._call("GET", "/queue")
        running = any(item[1] == prompt_id for item in queue.get("queue_running", []))
        return {"state": "running" if running else "pending", "history": None}

    def wait_for_completion(self, prompt_id: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
        """The prompt's history entry once it has ended; JobFailed on a ComfyUI error, TimeoutError after
        `timeout_s`. Listens on /ws (frames for this client id) when `websockets` is installed, else polls."""
        deadline = time.monotonic() + timeout_s
        try:
            from websockets.sync.client import connect
        except ImportError:
            connect = None  # type: ignore[assignment]
        if connect is not None:
            ws_url = self.base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}"
            try:
                with connect(ws_url, open_timeout=10) as socket:
                    check = True  # /history first: the prompt may have ended before the socket opened
                    while time.monotonic() < deadline:
                        if check and (status := self.get_status(prompt_id))["state"] == "done":
                            return _outcome(prompt_id, status["history"])
                        try:
                            wait_s = min(_WS_RECV_TIMEOUT_S, max(0.1, deadline - time.monotonic()))
                            message = socket.recv(timeout=wait_s)
                        except TimeoutError:
                            check = True
                            continue
                        check = isinstance(message, str) and _is_end(json.loads(message), prompt_id)
            except OSError:
                pass  # no /ws here: poll
        while time.monotonic() < deadline:
            status = self.get_status(prompt_id)
            if status["state"] == "done":
                return _outcome(prompt_id, status["history"])
            time.sleep(_POLL_INTERVAL_S)
        raise TimeoutError(f"prompt {prompt_id} did not end within {timeout_s}s")

    def download_file(self, filename: str, subfolder: str, folder_type: str, directory: str | Path) -> Path:
        """GET /view into `directory` under the file's own name."""
        target = Path(directory) / Path(filename).name
        target.parent.mkdir(parents=True, exist_ok=True)
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        try:
            with self._http.stream("GET", "/view", params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response, "GET /view")
                with target.open("wb") as sink:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"GET {self.base_url}/view: {exc!r}") from exc
        return target

    def run_workflow_and_download(
        self, workflow: Mapping[str, Any], directory: str | Path, *, timeout_s: float = 600.0
    ) -> list[Path]:
        """Submit, wait, and download every output into `directory`."""
        entry = self.wait_for_completion(self.submit_workflow(workflow), timeout_s=timeout_s)
        return [self.download_file(f["filename"], f["subfolder"], f["type"], directory) for f in output_files(entry)]


class AsyncComfyUIClient:
    """`ComfyUIClient` for asyncio code (polls /history; `await client.run_workflow_and_download(...)`)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8188",
        *,
        timeout_s: float = 30.0,
        client_id: str | None = None,
        api_key: str | None = None,
    ):
        """`api_key`: for a comfyui-api server's `/comfyui` door when it has API_KEYS (sent as X-API-Key)."""
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        headers = {"X-API-Key": api_key} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, headers=headers)

    async def __aenter__(self) -> AsyncComfyUIClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(f"{method} {self.base_url}{path}: {exc!r}") from exc
        return _raise_for(response, f"{method} {path}")

    async def upload_file(self, path: str | Path, *, subfolder: str = "", overwrite: bool = False) -> dict[str, Any]:
        file = Path(path)
        data = await asyncio.to_thread(file.read_bytes)
        fields = {"subfolder": subfolder, "overwrite": "true" if overwrite else "false", "type": "input"}
        return dict(await self._call("POST", "/upload/image", files={"image": (file.name, data)}, data=fields))

    async def object_info(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/object_info"))

    async def submit_workflow(self, workflow: Mapping[str, Any]) -> str:
        body = {"prompt": dict(workflow), "client_id": self.client_id}
        return _prompt_id(await self._call("POST", "/prompt", json=body))

    async def wait_for_completion(self, prompt_id: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            history = await self._call("GET", f"/history/{prompt_id}")
            if prompt_id in history:
                return _outcome(prompt_id, history[prompt_id])
            await asyncio.sleep(_POLL_INTERVAL_S)
        raise TimeoutError(f"prompt {prompt_id} did not end within {timeout_s}s")

    async def download_file(self, filename: str, subfolder: str, folder_type: str, directory: str | Path) -> Path:
        target = Path(directory) / Path(filename).name
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        response = await self._http.get("/view", params=params)
        if response.status_code >= 400:
            _raise_for(response, "GET /view")
        await asyncio.to_thread(_write, target, response.content)
        return target

    async def run_workflow_and_download(
        self, workflow: Mapping[str, Any], directory: str | Path, *, timeout_s: float = 600.0
    ) -> list[Path]:
        entry = await self.wait_for_completion(await self.submit_workflow(workflow), timeout_s=timeout_s)
        return [
            await self.download_file(f["filename"], f["subfolder"], f["type"], directory) for f in output_files(entry)
        ]


def _is_end(frame: Mapping[str, Any], prompt_id: str) -> bool:
    data = frame.get("data") or {}
    if data.get("prompt_id") != prompt_id:
        return False
    return frame.get("type") in ("execution_success", "execution_error", "execution_interrupted") or (
        frame.get("type") == "executing" and data.get("node") is None
    )


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
