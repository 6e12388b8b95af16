"""StorageRegistry rules without servers: which providers exist, request-time validation naming the field, object
keys, bounded upload concurrency and event delivery. A recording provider stands in for the storage edge."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.errors import InvalidRequest, StorageError
from comfyui_api.jobs.model import OutputFile
from comfyui_api.settings import StorageSettings
from comfyui_api.storage.base import Credential, StorageEvent, StorageProvider, UploadedFile, UploadTarget
from comfyui_api.storage.registry import StorageRegistry


class RecordingProvider:
    """Records uploads; holds each one until released so concurrency can be observed."""

    name = "s3"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.keys: list[tuple[str, str]] = []
        self.release = asyncio.Event()

    def can_download(self, url: str) -> bool:
        return url.startswith("s3://")

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        raise AssertionError("not used")

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        if "bucket" not in options:
            raise InvalidRequest("bucket is required", field="bucket")

    async def upload(
        self,
        path: Path,
        *,
        key: str,
        content_type: str,
        options: Mapping[str, Any],
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.keys.append((key, content_type))
        return UploadedFile(url=f"s3://{options['bucket']}/{key}", size_bytes=4)

    async def aclose(self) -> None:
        return None


def output(tmp_path: Path, name: str = "a.png", content_type: str = "") -> OutputFile:
    path = tmp_path / name
    path.write_bytes(b"data")
    return OutputFile("1", "image", name, "", "output", content_type, 4, path=path)


@pytest.fixture
async def registry() -> Any:
    built = StorageRegistry.from_settings(StorageSettings(aws_region="us-east-1", hf_token="hf_tok_123456"))
    yield built
    await built.aclose()


def test_recording_provider_satisfies_the_protocol() -> None:
    assert isinstance(RecordingProvider(), StorageProvider)


async def test_unconfigured_providers_are_reported_with_a_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    registry = StorageRegistry.from_settings(StorageSettings())
    try:
        states = {s.name: s for s in registry.states()}
        assert states["http"].available and states["hf"].available
        assert not states["s3"].available and "AWS_REGION" in (states["s3"].reason or "")
        assert not states["azure_blob"].available

        with pytest.raises(InvalidRequest) as caught:
            registry.validate_target(UploadTarget("s3", {"bucket": "b"}))
        assert caught.value.field == "s3"
        assert "not configured" in caught.value.message and "AWS_REGION" in caught.value.message
        with pytest.raises(InvalidRequest, match="S3 downloads are not available"):
            registry.downloader_for("s3://b/k.png")
        assert "storage provider s3 is off" in caplog.text
    finally:
        await registry.aclose()


async def test_a_provider_that_fails_to_initialise_is_recorded_without_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    registry = StorageRegistry.from_settings(StorageSettings(azure_connection_string="AccountKey=sekret-key-99;junk"))
    try:
        (state,) = [s for s in registry.states() if s.name == "azure_blob"]
        assert not state.available and "failed to initialise" in (state.reason or "")
        with pytest.raises(InvalidRequest) as caught:
            registry.provider_for_upload("azure_blob")
        assert caught.value.field == "azure_blob_upload"
        assert "sekret-key-99" not in caught.value.message and "sekret-key-99" not in caplog.text
        assert any(r.levelno == logging.WARNING and "azure_blob" in r.getMessage() for r in caplog.records)
    finally:
        await registry.aclose()


@pytest.mark.parametrize(
    ("target", "field"),
    [
        (UploadTarget("s3", {}), "s3.bucket"),
        (UploadTarget("s3", {"bucket": "b/c"}), "s3.bucket"),
        (UploadTarget("s3", {"bucket": "bkt", "prefix": 3}), "s3.prefix"),
        (UploadTarget("s3", {"bucket": "bkt", "presign_expires_s": 0}), "s3.presign_expires_s"),
        (UploadTarget("s3", {"bucket": "bkt", "presign_expires_s": 8 * 86400}), "s3.presign_expires_s"),
        (UploadTarget("s3", {"bucket": "bkt", "colour": "red"}), "s3.colour"),
        (UploadTarget("s3", {"bucket": "bkt", "key_style": "deep"}), "s3.key_style"),
        (UploadTarget("http", {}), "http_upload.url_prefix"),
        (UploadTarget("http", {"url_prefix": "ftp://x/"}), "http_upload.url_prefix"),
        (UploadTarget("hf", {"repo": "no-namespace"}), "hf_upload.repo"),
        (UploadTarget("hf", {"repo": "a/b", "repo_type": "kernel"}), "hf_upload.repo_type"),
        (UploadTarget("gcs", {}), "upload"),
        (UploadTarget("s3", {"bucket": "bkt", "prefix": "../other/"}), "s3.prefix"),
        (UploadTarget("s3", {"bucket": "bkt", "prefix": "/absolute/"}), "s3.prefix"),
        (UploadTarget("s3", {"bucket": "bkt", "prefix": "a\\..\\..\\b"}), "s3.prefix"),
        (UploadTarget("hf", {"repo": "a/b", "directory": "runs/../../x"}), "hf_upload.directory"),
    ],
)
async def test_validate_target_names_the_field(registry: StorageRegistry, target: UploadTarget, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        registry.validate_target(target)
    assert caught.value.field == field


async def test_valid_targets_pass(registry: StorageRegistry) -> None:
    registry.validate_target(UploadTarget("s3", {"bucket": "bkt", "prefix": "p/", "async": True, "key_style": "flat"}))
    registry.validate_target(UploadTarget("s3", {"bucket": "bkt", "presign_expires_s": 3600}))
    registry.validate_target(UploadTarget("http", {"url_prefix": "https://files.test/up"}))
    registry.validate_target(UploadTarget("hf", {"repo": "a/b", "repo_type": "dataset", "directory": "out"}))


@pytest.mark.parametrize(
    ("target", "key"),
    [
        (UploadTarget("s3", {"bucket": "b", "prefix": "renders/"}), "renders/job-1/x.png"),
        (UploadTarget("s3", {"bucket": "b", "prefix": "img-", "key_style": "flat"}), "img-x.png"),
        (UploadTarget("s3", {"bucket": "b"}), "job-1/x.png"),
        (UploadTarget("azure_blob", {"container": "c", "blob_prefix": "o/"}), "o/job-1/x.png"),
        (UploadTarget("hf", {"repo": "a/b", "directory": "/outputs"}), "outputs/job-1/x.png"),
        (UploadTarget("hf", {"repo": "a/b", "directory": "/", "key_style": "flat"}), "x.png"),
        (UploadTarget("http", {"url_prefix": "https://h/up"}), "job-1/x.png"),
    ],
)
async def test_object_keys(registry: StorageRegistry, target: UploadTarget, key: str) -> None:
    assert registry.object_key(target, "job-1", "x.png") == key


async def test_object_keys_cannot_escape_their_prefix(registry: StorageRegistry) -> None:
    target = UploadTarget("s3", {"bucket": "b", "prefix": "p/"})
    assert registry.object_key(target, "../../etc", "../../x.png") == "p/etc/x.png"


async def test_downloads_are_routed_by_url(registry: StorageRegistry) -> None:
    assert registry.downloader_for("s3://b/k.png").name == "s3"
    assert registry.downloader_for("https://huggingface.co/acme/m/resolve/main/a.bin").name == "hf"
    assert registry.downloader_for("https://huggingface.co/acme/m/blob/main/a.bin").name == "http"
    assert registry.downloader_for("https://acct.blob.core.windows.net/c/b.png?sig=x").name == "http"
    with pytest.raises(InvalidRequest, match="unsupported URL"):
        registry.downloader_for("ftp://host/file.png")


async def test_uploads_are_bounded_and_events_delivered(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    provider = RecordingProvider()
    events: list[StorageEvent] = []
    registry = StorageRegistry({"s3": provider}, max_parallel_uploads=2, on_event=events.append)
    target = UploadTarget("s3", {"bucket": "bkt"})
    outputs = [output(tmp_path, f"{i}.webp") for i in range(5)]

    tasks = [asyncio.create_task(registry.upload(o, target, "job-9")) for o in outputs]
    for _ in range(50):  # plenty of loop turns for every task to reach the provider if it were admitted
        await asyncio.sleep(0)
    assert provider.running == 2
    provider.release.set()
    results = await asyncio.gather(*tasks)

    assert provider.peak == 2
    assert [r.url for r in results] == [f"s3://bkt/job-9/{i}.webp" for i in range(5)]
    assert {content_type for _, content_type in provider.keys} == {"image/webp"}
    assert [e.name for e in events] == ["storage.file_uploaded"] * 5


async def test_a_broken_event_subscriber_does_not_fail_the_upload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: StorageEvent) -> None:
        raise RuntimeError("subscriber bug")

    provider = RecordingProvider()
    provider.release.set()
    registry = StorageRegistry({"s3": provider}, on_event=explode)

    uploaded = await registry.upload(output(tmp_path), UploadTarget("s3", {"bucket": "bkt"}), "j")

    assert uploaded.url == "s3://bkt/j/a.png"
    assert "storage event subscriber failed" in caplog.text


async def test_upload_without_a_local_file_is_a_storage_error(tmp_path: Path) -> None:
    registry = StorageRegistry({"s3": RecordingProvider()})
    missing = OutputFile("1", "image", "gone.png", "", "output", "image/png", 0, path=tmp_path / "gone.png")

    with pytest.raises(StorageError, match="no local file"):
        await registry.upload(missing, UploadTarget("s3", {"bucket": "bkt"}), "j")


async def test_upload_timeout_is_a_storage_error(tmp_path: Path) -> None:
    registry = StorageRegistry({"s3": RecordingProvider()}, transfer_timeout_s=0.05)

    with pytest.raises(StorageError, match=re.escape("did not finish within 0.05 s")):
        await registry.upload(output(tmp_path), UploadTarget("s3", {"bucket": "bkt"}), "j")
