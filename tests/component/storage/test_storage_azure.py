"""Azure Blob provider against Azurite on loopback: downloads (account credential and SAS URLs), uploads with
content types, failures and secret hygiene. Azurite missing is a failure with install instructions, never a skip."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, generate_blob_sas

from comfyui_api.errors import InputStagingError, StorageError
from comfyui_api.storage.azure import AzureBlobProvider
from tests.component.storage.storage_support import all_log_text, assert_no_secret, listing, write_file
from tests.servers.object_stores import AzuriteServer
from tests.servers.processes import free_port


def admin(server: AzuriteServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string)


@pytest.fixture
def container(azurite: AzuriteServer) -> str:
    name = f"c-{uuid.uuid4().hex[:12]}"
    with admin(azurite) as service:
        service.create_container(name)
    return name


@pytest.fixture
async def provider(azurite: AzuriteServer) -> AsyncIterator[AzureBlobProvider]:
    azure = AzureBlobProvider(timeout_s=30, connection_string=azurite.connection_string)
    yield azure
    await azure.aclose()


def put_blob(server: AzuriteServer, container: str, name: str, data: bytes, content_type: str | None = None) -> str:
    from azure.storage.blob import ContentSettings

    with admin(server) as service:
        blob = service.get_blob_client(container, name)
        blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))
        return str(blob.url)


async def test_download_blob_url_with_account_credential(
    provider: AzureBlobProvider, azurite: AzuriteServer, container: str, tmp_path: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 11)  # several GET chunks
    url = put_blob(azurite, container, "inputs/face one.png", data, "image/png")

    assert provider.can_download(url)
    path = await provider.download(url, tmp_path)

    assert path.name == "face_one.png"
    assert path.read_bytes() == data


async def test_download_with_sas_in_url(
    provider: AzureBlobProvider, azurite: AzuriteServer, container: str, tmp_path: Path
) -> None:
    url = put_blob(azurite, container, "sas/mask", b"mask bytes", "image/png")
    sas = generate_blob_sas(
        account_name=azurite.account,
        container_name=container,
        blob_name="sas/mask",
        account_key=azurite.key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(minutes=10),
    )

    path = await provider.download(f"{url}?{sas}", tmp_path)

    assert path.name == "mask.png"  # extension from the blob's Content-Type
    assert path.read_bytes() == b"mask bytes"


async def test_missing_blob_is_the_callers_fault(
    provider: AzureBlobProvider, azurite: AzuriteServer, container: str, tmp_path: Path
) -> None:
    with pytest.raises(InputStagingError, match=r"BlobNotFound|ResourceNotFound"):
        await provider.download(f"{azurite.blob_endpoint}/{container}/absent.png", tmp_path)
    assert listing(tmp_path) == []


async def test_download_over_limit_is_refused(
    provider: AzureBlobProvider, azurite: AzuriteServer, container: str, tmp_path: Path
) -> None:
    url = put_blob(azurite, container, "big.bin", b"q" * 20_000)

    with pytest.raises(InputStagingError, match="over the limit"):
        await provider.download(url, tmp_path, max_bytes=1000)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("name", "content_type"), [("x.jpg", "image/jpeg"), ("x.webm", "video/webm")])
async def test_upload_stores_bytes_and_content_type(
    provider: AzureBlobProvider,
    azurite: AzuriteServer,
    container: str,
    tmp_path: Path,
    name: str,
    content_type: str,
) -> None:
    data = os.urandom(10 * 1024 * 1024 + 5)  # over the single-put size: sent as blocks
    source = write_file(tmp_path, name, data)

    uploaded = await provider.upload(
        source, key=f"renders/job-3/{name}", content_type=content_type, options={"container": container}
    )

    assert uploaded.url == f"{azurite.blob_endpoint}/{container}/renders/job-3/{name}"
    assert uploaded.size_bytes == len(data)
    with admin(azurite) as service:
        blob = service.get_blob_client(container, f"renders/job-3/{name}")
        assert blob.download_blob().readall() == data
        assert blob.get_blob_properties().content_settings.content_type == content_type


async def test_uploaded_blob_is_readable_with_a_sas(
    provider: AzureBlobProvider, azurite: AzuriteServer, container: str, tmp_path: Path
) -> None:
    source = write_file(tmp_path, "shared.png", b"shared png")
    uploaded = await provider.upload(
        source, key="shared.png", content_type="image/png", options={"container": container}
    )
    sas = generate_blob_sas(
        account_name=azurite.account,
        container_name=container,
        blob_name="shared.png",
        account_key=azurite.key,
        permission=BlobSasPermissions(read=True),
        expiry=datetime.now(UTC) + timedelta(minutes=5),
    )

    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{uploaded.url}?{sas}")

    assert response.status_code == 200
    assert response.content == b"shared png"


async def test_upload_to_missing_container_fails_without_the_key(
    provider: AzureBlobProvider, azurite: AzuriteServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = write_file(tmp_path, "a.png", b"png")

    with pytest.raises(StorageError) as caught:
        await provider.upload(source, key="a.png", content_type="image/png", options={"container": "no-such-container"})

    assert caught.value.provider == "azure_blob"
    assert "ContainerNotFound" in caught.value.message
    assert_no_secret([azurite.key], str(caught.value), repr(caught.value), all_log_text(caplog))


async def test_server_down_raises_storage_error(tmp_path: Path, azurite: AzuriteServer) -> None:
    dead = AzuriteServer(blob_endpoint=f"http://127.0.0.1:{free_port()}/{azurite.account}")
    provider = AzureBlobProvider(timeout_s=3, connection_string=dead.connection_string)
    source = write_file(tmp_path, "a.png", b"png")
    try:
        with pytest.raises(StorageError) as caught:
            await provider.upload(source, key="a.png", content_type="image/png", options={"container": "cont"})
    finally:
        await provider.aclose()
    assert_no_secret([azurite.key], str(caught.value))
