"""StorageRegistry built from settings against the real servers: routing downloads by URL, uploads with object keys
and content types, storage events, timeouts."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfyui_api.errors import StorageError
from comfyui_api.settings import StorageSettings
from comfyui_api.storage.base import Credential, StorageEvent, UploadTarget
from comfyui_api.storage.registry import StorageRegistry
from tests.component.storage.conftest import FileServers, HubServer
from tests.component.storage.storage_support import FILE_SERVER_TOKEN, SEEDED_HF_FILES, listing, make_output, write_file
from tests.servers.object_stores import AzuriteServer, S3Server

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
async def registry_and_events(
    s3_server: S3Server, azurite: AzuriteServer, hf_hub: HubServer
) -> AsyncIterator[tuple[StorageRegistry, list[StorageEvent]]]:
    events: list[StorageEvent] = []
    settings = StorageSettings(
        aws_region=s3_server.region,
        aws_endpoint_url=s3_server.endpoint_url,
        azure_connection_string=azurite.connection_string,
        hf_endpoint=hf_hub.endpoint,
        hf_token=hf_hub.token,
        transfer_timeout_s=30,
    )
    registry = StorageRegistry.from_settings(settings, on_event=events.append)
    yield registry, events
    await registry.aclose()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = f"reg-{uuid.uuid4().hex[:12]}"
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket=name)
    admin.put_object(Bucket=name, Key="in/source.png", Body=b"s3 source")
    return name


async def test_every_configured_provider_is_available(
    registry_and_events: tuple[StorageRegistry, list[StorageEvent]],
) -> None:
    registry, _ = registry_and_events
    assert {(s.name, s.available) for s in registry.states()} == {
        ("s3", True),
        ("azure_blob", True),
        ("hf", True),
        ("http", True),
    }


async def test_downloads_are_routed_by_url(
    registry_and_events: tuple[StorageRegistry, list[StorageEvent]],
    bucket: str,
    azurite: AzuriteServer,
    hf_hub: HubServer,
    file_servers: FileServers,
    tmp_path: Path,
) -> None:
    from azure.storage.blob import BlobServiceClient

    registry, events = registry_and_events
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.create_container(f"reg-{uuid.uuid4().hex[:10]}")
        container.upload_blob("mask.png", b"azure source")
        blob_url = container.get_blob_client("mask.png").url
    write_file(file_servers.root / "reg", "plain.png", b"http source")
    urls = {
        f"s3://{bucket}/in/source.png": (b"s3 source", "s3"),
        blob_url: (b"azure source", "azure_blob"),
        f"{hf_hub.endpoint}/acme/tiny-model/resolve/main/config.json": (
            SEEDED_HF_FILES["models/acme/tiny-model/config.json"],
            "hf",
        ),
        f"{file_servers.open.url}/files/reg/plain.png": (b"http source", "http"),
    }

    for url, (data, provider_name) in urls.items():
        assert registry.downloader_for(url).name == provider_name
        path = await registry.download(url, tmp_path, job_id="job-1")
        assert path.read_bytes() == data

    assert [(e.name, e.provider, e.job_id) for e in events] == [
        ("storage.file_downloaded", name, "job-1") for _, name in urls.values()
    ]
    assert all(e.size_bytes > 0 and e.duration_ms >= 0 for e in events)


async def test_upload_builds_job_keys_or_flat_keys_and_emits_events(
    registry_and_events: tuple[StorageRegistry, list[StorageEvent]], s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    registry, events = registry_and_events
    output = make_output(write_file(tmp_path, "ComfyUI_00001_.mp4", os.urandom(1000)), kind="video")

    nested = await registry.upload(output, UploadTarget("s3", {"bucket": bucket, "prefix": "renders/"}), "job-42")
    flat = await registry.upload(
        output, UploadTarget("s3", {"bucket": bucket, "prefix": "flat-", "key_style": "flat"}), "job-42"
    )

    assert nested.url == f"s3://{bucket}/renders/job-42/ComfyUI_00001_.mp4"
    assert flat.url == f"s3://{bucket}/flat-ComfyUI_00001_.mp4"
    stored = s3_server.admin_client().head_object(Bucket=bucket, Key="renders/job-42/ComfyUI_00001_.mp4")
    assert stored["ContentType"] == "video/mp4"  # guessed from the name: the output declared none
    assert [(e.name, e.url, e.size_bytes) for e in events] == [
        ("storage.file_uploaded", nested.url, 1000),
        ("storage.file_uploaded", flat.url, 1000),
    ]


async def test_hf_and_http_targets_through_the_registry(
    registry_and_events: tuple[StorageRegistry, list[StorageEvent]],
    hf_hub: HubServer,
    file_servers: FileServers,
    tmp_path: Path,
) -> None:
    registry, _ = registry_and_events
    output = make_output(write_file(tmp_path, "img.png", b"png bytes"), content_type="image/png")

    to_hf = await registry.upload(output, UploadTarget("hf", {"repo": "acme/uploads", "directory": "/out/"}), "j-5")
    to_http = await registry.upload(
        output,
        UploadTarget("http", {"url_prefix": f"{file_servers.bearer.url}/files/reg-up"}),
        "j-5",
        credentials=[
            Credential(url_pattern=file_servers.bearer.url, auth={"type": "bearer", "token": FILE_SERVER_TOKEN})
        ],
    )

    assert to_hf.url == f"{hf_hub.endpoint}/acme/uploads/resolve/main/out/j-5/img.png"
    assert to_http.url == f"{file_servers.bearer.url}/files/reg-up/j-5/img.png"
    assert (file_servers.root / "reg-up/j-5/img.png").read_bytes() == b"png bytes"


async def test_a_transfer_over_the_timeout_fails_and_leaves_nothing(file_servers: FileServers, tmp_path: Path) -> None:
    registry = StorageRegistry.from_settings(StorageSettings(transfer_timeout_s=0.5))
    try:
        with pytest.raises(StorageError, match=re.escape("did not finish within 0.5 s")):
            await registry.download(f"{file_servers.open.url}/slow?seconds=5", tmp_path)
    finally:
        await registry.aclose()
    assert listing(tmp_path) == []


async def test_a_failed_upload_is_an_error_never_a_url(
    registry_and_events: tuple[StorageRegistry, list[StorageEvent]], tmp_path: Path
) -> None:
    registry, events = registry_and_events
    output = make_output(write_file(tmp_path, "x.png", b"png"))

    with pytest.raises(StorageError):
        await registry.upload(output, UploadTarget("s3", {"bucket": "no-such-bucket-zz"}), "job-1")
    await asyncio.sleep(0)
    assert events == []
