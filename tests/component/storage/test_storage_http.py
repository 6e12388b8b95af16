"""HTTP provider against the test file server on loopback: downloads (names, auth kinds, limits, redirects),
PUT uploads, failures and secret hygiene."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyui_api.errors import InputStagingError, StorageError
from comfyui_api.storage.base import Credential
from comfyui_api.storage.http import HttpProvider
from tests.component.storage.conftest import FileServers
from tests.component.storage.storage_support import (
    FILE_SERVER_TOKEN,
    all_log_text,
    assert_no_secret,
    listing,
    write_file,
)
from tests.servers.processes import free_port


@pytest.fixture
async def provider() -> AsyncIterator[HttpProvider]:
    http = HttpProvider(timeout_s=20)
    yield http
    await http.aclose()


def bearer(pattern: str, token: str = FILE_SERVER_TOKEN) -> Credential:
    return Credential(url_pattern=pattern, auth={"type": "bearer", "token": token})


async def seen_requests(base_url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{base_url}/_requests")
    records: list[dict[str, Any]] = response.json()
    return records


async def test_download_keeps_name_and_bytes(provider: HttpProvider, file_servers: FileServers, tmp_path: Path) -> None:
    data = os.urandom(2 * 1024 * 1024 + 3)
    write_file(file_servers.root / "dl", "photo.png", data)

    path = await provider.download(f"{file_servers.open.url}/files/dl/photo.png", tmp_path)

    assert path == tmp_path / "photo.png"
    assert path.read_bytes() == data


async def test_same_name_twice_gets_a_second_file(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    write_file(file_servers.root / "dl", "twice.png", b"png")
    url = f"{file_servers.open.url}/files/dl/twice.png"

    first = await provider.download(url, tmp_path)
    second = await provider.download(url, tmp_path)

    assert first != second
    assert listing(tmp_path) == ["twice-1.png", "twice.png"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("content_type=image/webp", "blob.webp"),
        ("disposition=attachment%3B%20filename%3D%22render%20final.mp4%22", "render_final.mp4"),
        ("disposition=attachment%3B%20filename*%3DUTF-8%27%27clip%2520one.webm", "clip_one.webm"),
    ],
)
async def test_extension_comes_from_disposition_or_content_type(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path, query: str, expected: str
) -> None:
    write_file(file_servers.root / "dl", "blob", b"bytes")

    path = await provider.download(f"{file_servers.open.url}/files/dl/blob?{query}", tmp_path)

    assert path.name == expected
    assert path.read_bytes() == b"bytes"


async def test_download_with_bearer_credential(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    write_file(file_servers.root / "auth", "a.png", b"secret png")
    url = f"{file_servers.bearer.url}/files/auth/a.png"

    path = await provider.download(url, tmp_path, credentials=[bearer(f"{file_servers.bearer.url}/files/**")])

    assert path.read_bytes() == b"secret png"


async def test_download_with_userinfo_query_and_default_header(tmp_path: Path, file_servers: FileServers) -> None:
    from tests.servers.processes import serve_python_module

    write_file(file_servers.root / "auth", "b.png", b"bytes b")
    args = ["--root", str(file_servers.root), "--basic", "ann:pa55word", "--query", "key=q-secret-1234"]
    args += ["--header", "X-Api-Key=hdr-secret-5678"]
    with serve_python_module("tests.servers.file_server", args, log_dir=tmp_path) as server:
        host = server.url.removeprefix("http://")
        by_userinfo = HttpProvider(timeout_s=10)
        by_header = HttpProvider(timeout_s=10, auth_header=("X-Api-Key", "hdr-secret-5678"))
        try:
            one = await by_userinfo.download(f"http://ann:pa55word@{host}/files/auth/b.png", tmp_path / "1")
            query = Credential(url_pattern=server.url, auth={"type": "query", "name": "key", "value": "q-secret-1234"})
            two = await by_userinfo.download(f"{server.url}/files/auth/b.png", tmp_path / "2", credentials=[query])
            three = await by_header.download(f"{server.url}/files/auth/b.png", tmp_path / "3")
            with pytest.raises(InputStagingError, match="401"):
                await by_userinfo.download(f"{server.url}/files/auth/b.png", tmp_path / "4")
        finally:
            await by_userinfo.aclose()
            await by_header.aclose()
    assert one.read_bytes() == two.read_bytes() == three.read_bytes() == b"bytes b"


async def test_unauthorised_download_fails_without_leaking(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-3c9d1f"
    url = f"{file_servers.bearer.url}/files/auth/a.png?sig=url-secret-998877"

    with pytest.raises(InputStagingError) as caught:
        await provider.download(url, tmp_path, credentials=[bearer("http://127.0.0.1:*/**", wrong)])

    assert "401" in caught.value.message
    assert "sig=***" in caught.value.message
    assert_no_secret([wrong, "url-secret-998877"], str(caught.value), all_log_text(caplog))
    assert listing(tmp_path) == []


async def test_credentials_do_not_follow_a_redirect_to_another_origin(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    write_file(file_servers.root / "r", "target.png", b"redirected")
    # "localhost" and "127.0.0.1" are different origins for the same open server.
    target = f"http://localhost:{file_servers.open.port}/files/r/target.png"
    start = f"{file_servers.bearer.url}/redirect?to={target}"

    path = await provider.download(start, tmp_path, credentials=[bearer(f"{file_servers.bearer.url}/**")])

    assert path.read_bytes() == b"redirected"
    hits = [r for r in await seen_requests(file_servers.open.url) if r["path"] == "/files/r/target.png"]
    assert hits and all("authorization" not in r["headers"] for r in hits)


async def test_download_over_limit_is_refused_and_cleaned_up(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    write_file(file_servers.root / "dl", "large.bin", b"z" * 100_000)

    with pytest.raises(InputStagingError, match="over the limit"):
        await provider.download(f"{file_servers.open.url}/files/dl/large.bin", tmp_path, max_bytes=10_000)

    assert listing(tmp_path) == []


async def test_missing_file_and_server_errors_are_told_apart(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    with pytest.raises(InputStagingError, match="404"):
        await provider.download(f"{file_servers.open.url}/files/none.png", tmp_path)
    with pytest.raises(StorageError, match="503"):
        await provider.download(f"{file_servers.open.url}/status/503", tmp_path)
    with pytest.raises(StorageError, match="ConnectError"):
        await provider.download(f"http://127.0.0.1:{free_port()}/x.png", tmp_path)


async def test_upload_puts_bytes_and_content_type(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    source = write_file(tmp_path, "out.webp", data)

    uploaded = await provider.upload(
        source,
        key="job-7/out.webp",
        content_type="image/webp",
        options={"url_prefix": f"{file_servers.open.url}/files/uploads/"},
    )

    assert uploaded.url == f"{file_servers.open.url}/files/uploads/job-7/out.webp"
    assert uploaded.size_bytes == len(data)
    assert (file_servers.root / "uploads/job-7/out.webp").read_bytes() == data
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(uploaded.url)
    assert response.headers["content-type"] == "image/webp"


async def test_upload_with_credential_returns_url_without_secrets(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path
) -> None:
    source = write_file(tmp_path, "a.png", b"png!")
    prefix = f"{file_servers.bearer.url}/files/private?sv=2024&sig=prefix-secret-4455"

    uploaded = await provider.upload(
        source,
        key="k/a.png",
        content_type="image/png",
        options={"url_prefix": prefix},
        credentials=[bearer(f"{file_servers.bearer.url}/**")],
    )

    assert uploaded.url == f"{file_servers.bearer.url}/files/private/k/a.png"
    assert (file_servers.root / "private/k/a.png").read_bytes() == b"png!"


async def test_rejected_upload_raises_storage_error_without_secrets(
    provider: HttpProvider, file_servers: FileServers, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = write_file(tmp_path, "a.png", b"png!")
    wrong = "not-the-token-aa11bb"

    with pytest.raises(StorageError) as caught:
        await provider.upload(
            source,
            key="a.png",
            content_type="image/png",
            options={"url_prefix": f"{file_servers.bearer.url}/files/x"},
            credentials=[bearer("http://127.0.0.1:*/**", wrong)],
        )
    with pytest.raises(StorageError, match="ConnectError") as down:
        await provider.upload(
            source,
            key="a.png",
            content_type="image/png",
            options={"url_prefix": f"http://user:pw-secret-77@127.0.0.1:{free_port()}/x"},
        )

    assert caught.value.provider == "http" and "401" in caught.value.message
    assert_no_secret([wrong, "pw-secret-77"], str(caught.value), str(down.value), all_log_text(caplog))
