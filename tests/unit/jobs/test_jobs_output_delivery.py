"""OutputDelivery without servers: conversion before upload, parallel uploads, failures recorded per output (never as
a URL), the base64 fallback and its cap, and secrets kept out of error texts. A scripted provider stands in for the
storage edge behind a real StorageRegistry."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfyui_api.errors import StorageError
from comfyui_api.jobs.model import ConvertSpec, JobRequest, JobResult, OutputFile, Stats
from comfyui_api.jobs.output_delivery import FALLBACK_NOTE, OutputDelivery, delivery_failure, record_upload_time
from comfyui_api.storage.base import Credential, UploadedFile, UploadTarget
from comfyui_api.storage.registry import StorageRegistry

SECRET = "request-secret-value-123"


class ScriptedProvider:
    """Uploads succeed unless the key contains "fail"; concurrency is recorded."""

    name = "s3"

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0
        self.uploaded: dict[str, bytes] = {}

    def can_download(self, url: str) -> bool:
        return False

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        raise AssertionError("not used")

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        return None

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
            await asyncio.sleep(0.01)
            if "fail" in key:
                raise StorageError(f"upload of {key} was denied for key {SECRET}", provider=self.name)
            self.uploaded[key] = await asyncio.to_thread(path.read_bytes)
            return UploadedFile(url=f"s3://bucket/{key}", size_bytes=len(self.uploaded[key]))
        finally:
            self.running -= 1

    async def aclose(self) -> None:
        return None


def png(path: Path, colour: tuple[int, int, int] = (200, 10, 10), size: int = 8) -> OutputFile:
    Image.new("RGB", (size, size), colour).save(path, format="PNG")
    return OutputFile("9", "image", path.name, "", "output", "image/png", path.stat().st_size, path=path)


def audio(path: Path) -> OutputFile:
    path.write_bytes(b"fLaC" + b"\0" * 60)
    return OutputFile("9", "audio", path.name, "", "output", "audio/flac", 64, path=path)


def job(**fields: Any) -> JobRequest:
    return JobRequest(id="job-1", graph={}, timeout_s=30, **fields)


S3 = UploadTarget("s3", {"bucket": "bucket"})
S3_CREDENTIAL = Credential("s3://bucket/", {"type": "s3", "access_key_id": "a", "secret_access_key": SECRET})


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider()


def delivery(provider: ScriptedProvider, *, max_fallback_bytes: int = 10_000, parallel: int = 2) -> OutputDelivery:
    registry = StorageRegistry({"s3": provider}, max_parallel_uploads=parallel)
    return OutputDelivery(registry, max_fallback_bytes=max_fallback_bytes)


async def test_uploads_run_in_parallel_within_the_bound(provider: ScriptedProvider, tmp_path: Path) -> None:
    outputs = [png(tmp_path / f"out{i}.png") for i in range(5)]

    delivered = await delivery(provider, parallel=2).deliver(job(upload=S3), outputs)

    assert provider.peak == 2
    assert [output.url for output in delivered.outputs] == [f"s3://bucket/job-1/out{i}.png" for i in range(5)]
    assert all(output.error is None for output in delivered.outputs)
    assert delivered.upload_ms is not None and delivered.upload_ms > 0


async def test_a_failed_upload_is_recorded_and_never_a_url(provider: ScriptedProvider, tmp_path: Path) -> None:
    good, bad = png(tmp_path / "good.png"), png(tmp_path / "fail.png")
    request = job(upload=S3, credentials=(S3_CREDENTIAL,))

    delivered = await delivery(provider).deliver(request, [good, bad])

    assert good.url == "s3://bucket/job-1/good.png"
    assert bad.url is None and bad.path is None
    assert not (tmp_path / "fail.png").exists()
    assert bad.error is not None and "denied" in bad.error and SECRET not in bad.error
    failure = delivery_failure(request, JobResult("job-1", {}, delivered.outputs, [], Stats()))
    assert failure is not None
    assert failure.field == "s3" and failure.status_code == 502
    assert failure.details["failed"] == [{"filename": "fail.png", "error": bad.error}]
    assert "1 of 2 output(s)" in failure.message


async def test_fallback_keeps_failed_outputs_inline_up_to_the_cap(provider: ScriptedProvider, tmp_path: Path) -> None:
    first, second = png(tmp_path / "fail-1.png"), png(tmp_path / "fail-2.png")
    cap = first.size_bytes + second.size_bytes - 1  # room for the first only

    delivered = await delivery(provider, max_fallback_bytes=cap).deliver(
        job(upload=S3, fallback_to_base64=True), [first, second]
    )

    assert first.path is not None and first.note == FALLBACK_NOTE and first.error is not None
    assert second.path is None and second.note is not None and "MAX_BASE64_FALLBACK_MB" in second.note
    result = JobResult("job-1", {}, delivered.outputs, [], Stats())
    failure = delivery_failure(job(upload=S3), result)
    assert failure is not None and [item["filename"] for item in failure.details["failed"]] == ["fail-2.png"]


async def test_conversion_happens_before_the_upload(provider: ScriptedProvider, tmp_path: Path) -> None:
    image, sound = png(tmp_path / "pic.png", size=32), audio(tmp_path / "sound.flac")
    request = job(upload=S3, convert=ConvertSpec("jpeg", {"quality": 50}))

    delivered = await delivery(provider).deliver(request, [image, sound])

    converted, kept = delivered.outputs
    assert converted.filename == "pic.jpg" and converted.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(provider.uploaded["job-1/pic.jpg"])).format == "JPEG"
    assert not (tmp_path / "pic.png").exists()  # the original is gone once converted
    assert kept.filename == "sound.flac" and kept.note is not None and "left as is" in kept.note
    assert provider.uploaded["job-1/sound.flac"].startswith(b"fLaC")


async def test_unreadable_image_is_left_as_is_with_a_note(provider: ScriptedProvider, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    output = OutputFile("9", "image", "broken.png", "", "output", "image/png", 15, path=broken)

    delivered = await delivery(provider).deliver(job(convert=ConvertSpec("webp")), [output])

    assert delivered.outputs[0].path == broken and delivered.outputs[0].filename == "broken.png"
    assert delivered.outputs[0].note is not None and "not converted" in delivered.outputs[0].note
    assert delivered.upload_ms is None


def test_upload_time_is_taken_out_of_postprocessing() -> None:
    stats = Stats(postprocess_ms=120.0)
    record_upload_time(stats, 100.0)
    assert (stats.upload_ms, stats.postprocess_ms) == (100.0, 20.0)
    untouched = Stats(postprocess_ms=5.0)
    record_upload_time(untouched, None)
    assert (untouched.upload_ms, untouched.postprocess_ms) == (0.0, 5.0)
