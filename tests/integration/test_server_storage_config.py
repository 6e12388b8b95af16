"""Storage as the server's configuration leaves it: a provider that is not configured or failed to initialise is a
400 saying why, and MAX_BASE64_FALLBACK_MB caps what a failed upload may return inline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.server import ServerProcess, decode_image, image_graph, load_image_graph, rgb, sampler_graph
from tests.integration.server import start_server as start_api
from tests.servers.processes import ServerProcess as FileServer
from tests.servers.processes import serve_python_module

pytestmark = pytest.mark.slow

FILE_TOKEN = "config-file-token-0d9a71"
FALLBACK_LIMIT_BYTES = 4096  # MAX_BASE64_FALLBACK_MB below, in bytes


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    root = tmp_path_factory.mktemp("files")
    args = ["--root", str(root), "--bearer", FILE_TOKEN]
    with serve_python_module("tests.servers.file_server", args, log_dir=root) as started:
        yield started


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "AZURE_STORAGE_ACCOUNT": "someaccount",  # without a key or SAS token: the provider cannot initialise
        "MAX_BASE64_FALLBACK_MB": str(FALLBACK_LIMIT_BYTES / 2**20),
    }
    api = start_api(tmp_path_factory.mktemp("api"), env=env)
    try:
        yield api
    finally:
        api.stop()


def post_prompt(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url("/prompt"), json=body, timeout=60)


def test_unconfigured_s3_is_a_400_saying_why(server: ServerProcess) -> None:
    response = post_prompt(server, {"prompt": image_graph(), "s3": {"bucket": "some-bucket"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "s3"
    assert "not configured" in error["message"] and "AWS_REGION" in error["message"]


def test_provider_that_failed_to_initialise_is_a_400_saying_why(server: ServerProcess) -> None:
    response = post_prompt(server, {"prompt": image_graph(), "azure_blob_upload": {"container": "outputs"}})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "azure_blob_upload"
    assert "failed to initialise" in error["message"] and "AZURE_STORAGE_KEY" in error["message"]


def test_s3_input_without_s3_is_a_400_naming_the_input(server: ServerProcess) -> None:
    response = post_prompt(server, {"prompt": load_image_graph("s3://bucket/in.png")})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == "prompt.1.inputs.image"
    assert "S3 downloads are not available" in error["message"]


def test_base64_fallback_is_capped(server: ServerProcess, file_server: FileServer) -> None:
    target = {"url_prefix": f"{file_server.url}/files/out"}  # no token in the request: every PUT is refused

    small = post_prompt(server, {"prompt": image_graph(0x335577), "http_upload": target, "fallback_to_base64": True})
    large = post_prompt(
        server, {"prompt": sampler_graph(1, size=128), "http_upload": target, "fallback_to_base64": True}
    )

    assert small.status_code == 200, small.text
    assert small.json()["outputs"][0]["size_bytes"] <= FALLBACK_LIMIT_BYTES
    assert decode_image(small.json()["images"][0]).getpixel((0, 0)) == rgb(0x335577)
    assert large.status_code == 502, large.text
    answer = large.json()
    assert answer["outputs"][0]["size_bytes"] > FALLBACK_LIMIT_BYTES
    assert answer["images"] == [""]
    assert "401" in answer["outputs"][0]["error"]
    assert "MAX_BASE64_FALLBACK_MB" in answer["outputs"][0]["note"]
    assert answer["error"]["type"] == "storage_failed"
