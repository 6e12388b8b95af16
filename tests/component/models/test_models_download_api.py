"""POST /download through Litestar with the project's error mapping: 202 then the file appears, 200 with size and
duration when waiting, 400 naming the field for bad input. The app runs in the test's own event loop (httpx's
ASGI transport), beside the loopback model server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from comfyui_api.api.downloads import MODEL_LIBRARY_STATE_KEY, DownloadController
from comfyui_api.api.errors import EXCEPTION_HANDLERS
from comfyui_api.models.cache import ModelCache
from comfyui_api.models.library import ModelLibrary
from tests.component.models.model_server import ModelServer, serve_models


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    files = {"/m/base.safetensors": b"b" * 64, "/m/up.pth": b"u" * 16}
    async with serve_models(ModelServer(files=files, bearer=None)) as running:
        yield running


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[ModelLibrary]:
    cache = ModelCache(tmp_path / "cache")
    models = ModelLibrary(cache, tmp_path / "models")
    try:
        yield models
    finally:
        await models.aclose()
        await cache.aclose()


def make_app(library: ModelLibrary | None) -> Litestar:
    app = Litestar(route_handlers=[DownloadController], exception_handlers=dict(EXCEPTION_HANDLERS))
    if library is not None:
        app.state[MODEL_LIBRARY_STATE_KEY] = library
    return app


@pytest.fixture
async def client(library: ModelLibrary) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(library))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30) as test_client:
        yield test_client


async def test_download_in_the_background(
    client: httpx.AsyncClient, library: ModelLibrary, server: ModelServer, tmp_path: Path
) -> None:
    url = server.url("/m/base.safetensors", "X-Amz-Signature=secret")
    response = await client.post("/download", json={"url": url, "model_type": "checkpoints"})
    assert response.status_code == 202
    assert response.json() == {
        "url": server.url("/m/base.safetensors"),
        "model_type": "checkpoints",
        "filename": "base.safetensors",
        "status": "started",
    }
    await library.wait_background(timeout_s=10)
    assert (tmp_path / "models" / "checkpoints" / "base.safetensors").read_bytes() == b"b" * 64


async def test_download_and_wait(client: httpx.AsyncClient, server: ModelServer, tmp_path: Path) -> None:
    body = {"url": server.url("/m/up.pth"), "model_type": "upscale_models", "filename": "4x.pth", "wait": True}
    response = await client.post("/download", json=body)
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "completed" and data["filename"] == "4x.pth" and data["size"] == 16
    assert isinstance(data["duration"], float) and data["duration"] >= 0
    assert (tmp_path / "models" / "upscale_models" / "4x.pth").read_bytes() == b"u" * 16
    again = await client.post("/download", json=body)  # already installed: no second download
    assert again.status_code == 200 and again.json()["filename"] == "4x.pth"
    assert server.gets["/m/up.pth"] == 1


async def test_a_failed_wait_download_is_reported(client: httpx.AsyncClient, server: ModelServer) -> None:
    body = {"url": server.url("/m/nope.safetensors"), "model_type": "loras", "wait": True}
    response = await client.post("/download", json=body)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "storage_failed"
    assert "HTTP 404" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"url": "https://h/m.safetensors", "model_type": "magic"}, "model_type", "unknown model_type 'magic'"),
        ({"url": "https://h/m.safetensors", "model_type": "custom_nodes"}, "model_type", "unknown model_type"),
        ({"url": "not a url", "model_type": "loras"}, "url", "absolute URL"),
        ({"url": "ftp://h/m.safetensors", "model_type": "loras"}, "url", "ftp:// is not supported"),
        ({"model_type": "loras"}, "url", "url is required"),
        ({"url": "https://h/m", "model_type": 3}, "model_type", "model_type is required"),
        ({"url": "https://h/m", "model_type": "loras", "filename": "../x.pt"}, "filename", "plain file name"),
        ({"url": "https://h/m", "model_type": "loras", "filename": ".hidden"}, "filename", "plain file name"),
        ({"url": "https://h/m", "model_type": "loras", "wait": "yes"}, "wait", "true or false"),
        ({"url": "https://h/m", "model_type": "loras", "extra": 1}, "extra", "unknown field 'extra'"),
        ({"url": "https://h/m", "model_type": "loras", "auth": {"type": "bearer"}}, "auth.token", "non-empty"),
        ({"url": "https://h/m", "model_type": "loras", "auth": {"type": "magic"}}, "auth.type", "one of"),
        ({"url": "https://h/m", "model_type": "loras", "auth": "tok"}, "auth", "must be an object"),
    ],
)
async def test_bad_requests_name_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = await client.post("/download", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert words in error["message"]


async def test_auth_is_used_for_the_download(client: httpx.AsyncClient, tmp_path: Path) -> None:
    private = ModelServer(files={"/p/vae.safetensors": b"v" * 8}, bearer="tok")
    async with serve_models(private) as running:
        body: dict[str, Any] = {"url": running.url("/p/vae.safetensors"), "model_type": "vae", "wait": True}
        assert (await client.post("/download", json=body)).status_code == 502
        body["auth"] = {"type": "bearer", "token": "tok"}
        response = await client.post("/download", json=body)
    assert response.status_code == 200
    assert "tok" not in response.text
    assert (tmp_path / "models" / "vae" / "vae.safetensors").read_bytes() == b"v" * 8


async def test_without_a_model_library_the_endpoint_is_unavailable() -> None:
    transport = httpx.ASGITransport(app=make_app(None))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test", timeout=30) as test_client:
        response = await test_client.post("/download", json={"url": "https://h/m", "model_type": "loras"})
    assert response.status_code == 503
