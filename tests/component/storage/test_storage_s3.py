"""S3 provider against moto's S3 server on loopback: downloads, uploads (single and multipart), presigned URLs,
per-request credentials, failures and secret hygiene."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from comfyui_api.errors import InputStagingError, StorageError
from comfyui_api.storage.base import Credential
from comfyui_api.storage.s3 import S3Provider
from tests.component.storage.storage_support import all_log_text, assert_no_secret, listing, write_file
from tests.servers.object_stores import S3Server
from tests.servers.processes import free_port

pytestmark = pytest.mark.usefixtures("aws_env")


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    s3_server.admin_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
async def provider(s3_server: S3Server) -> AsyncIterator[S3Provider]:
    s3 = S3Provider(region=s3_server.region, endpoint_url=s3_server.endpoint_url, timeout_s=30)
    yield s3
    await s3.aclose()


async def test_download_streams_object_into_dest_dir(
    provider: S3Provider, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    s3_server.admin_client().put_object(Bucket=bucket, Key="inputs/photo.png", Body=data, ContentType="image/png")

    path = await provider.download(f"s3://{bucket}/inputs/photo.png", tmp_path)

    assert path.parent == tmp_path and path.name == "photo.png"
    assert path.read_bytes() == data
    assert listing(tmp_path) == ["photo.png"]  # no part files left behind


async def test_download_gets_extension_from_content_type_when_key_has_none(
    provider: S3Provider, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    s3_server.admin_client().put_object(
        Bucket=bucket, Key="blobs/abc123", Body=b"RIFF....WEBP", ContentType="image/webp"
    )

    path = await provider.download(f"s3://{bucket}/blobs/abc123", tmp_path)

    assert path.name == "abc123.webp"


async def test_missing_key_is_the_callers_fault(provider: S3Provider, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(InputStagingError, match="NoSuchKey"):
        await provider.download(f"s3://{bucket}/nope.png", tmp_path)
    assert listing(tmp_path) == []


async def test_download_over_max_bytes_is_refused_and_leaves_nothing(
    provider: S3Provider, s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    s3_server.admin_client().put_object(Bucket=bucket, Key="big.bin", Body=b"x" * 5000)

    with pytest.raises(InputStagingError, match="over the limit of 4096 bytes"):
        await provider.download(f"s3://{bucket}/big.bin", tmp_path, max_bytes=4096)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("image.png", "image/png"), ("clip.mp4", "video/mp4"), ("voice.wav", "audio/wav")],
)
async def test_upload_returns_s3_url_and_stores_bytes_with_content_type(
    provider: S3Provider, s3_server: S3Server, bucket: str, tmp_path: Path, name: str, content_type: str
) -> None:
    data = os.urandom(200_000)
    source = write_file(tmp_path, name, data)

    uploaded = await provider.upload(
        source, key=f"out/job-1/{name}", content_type=content_type, options={"bucket": bucket}
    )

    assert uploaded.url == f"s3://{bucket}/out/job-1/{name}"
    assert uploaded.size_bytes == len(data)
    stored = s3_server.admin_client().get_object(Bucket=bucket, Key=f"out/job-1/{name}")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == content_type


async def test_large_upload_goes_multipart_and_round_trips(s3_server: S3Server, bucket: str, tmp_path: Path) -> None:
    provider = S3Provider(
        region=s3_server.region,
        endpoint_url=s3_server.endpoint_url,
        timeout_s=60,
        part_size_bytes=5 * 1024 * 1024,
        multipart_threshold_bytes=6 * 1024 * 1024,
        max_parallel_parts=3,
    )
    data = os.urandom(13 * 1024 * 1024 + 5)  # three parts, the last one short
    source = write_file(tmp_path, "video.mp4", data)
    try:
        uploaded = await provider.upload(
            source, key="big/video.mp4", content_type="video/mp4", options={"bucket": bucket}
        )
    finally:
        await provider.aclose()

    stored = s3_server.admin_client().get_object(Bucket=bucket, Key="big/video.mp4")
    assert stored["Body"].read() == data
    assert stored["ContentType"] == "video/mp4"
    assert "-3" in stored["ETag"]  # a multipart ETag ends with the number of parts
    assert uploaded.size_bytes == len(data)


async def test_failed_multipart_upload_is_aborted(s3_server: S3Server, tmp_path: Path) -> None:
    provider = S3Provider(
        region=s3_server.region,
        endpoint_url=s3_server.endpoint_url,
        timeout_s=30,
        part_size_bytes=5 * 1024 * 1024,
        multipart_threshold_bytes=5 * 1024 * 1024,
    )
    source = write_file(tmp_path, "big.bin", b"y" * (6 * 1024 * 1024))
    try:
        with pytest.raises(StorageError, match="NoSuchBucket"):
            await provider.upload(
                source, key="k/big.bin", content_type="application/octet-stream", options={"bucket": "no-such-bucket-x"}
            )
    finally:
        await provider.aclose()


async def test_presigned_url_is_fetchable(provider: S3Provider, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(50_000)
    source = write_file(tmp_path, "shared.webp", data)

    uploaded = await provider.upload(
        source, key="p/shared.webp", content_type="image/webp", options={"bucket": bucket, "presign_expires_s": 600}
    )

    assert uploaded.url.startswith("http://127.0.0.1:")
    assert "X-Amz-Signature=" in uploaded.url and "X-Amz-Expires=600" in uploaded.url
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(uploaded.url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "image/webp"


async def test_upload_to_missing_bucket_raises_storage_error(provider: S3Provider, tmp_path: Path) -> None:
    source = write_file(tmp_path, "a.png", b"png")

    with pytest.raises(StorageError) as caught:
        await provider.upload(source, key="a.png", content_type="image/png", options={"bucket": "missing-bucket-1"})

    assert caught.value.provider == "s3"
    assert "NoSuchBucket" in caught.value.message
    assert "s3://missing-bucket-1/a.png" in caught.value.message


async def test_server_down_raises_storage_error(tmp_path: Path) -> None:
    provider = S3Provider(region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_s=5)
    source = write_file(tmp_path, "a.png", b"png")
    try:
        with pytest.raises(StorageError, match=re.escape("upload to s3://b-1/a.png failed")):
            await provider.upload(source, key="a.png", content_type="image/png", options={"bucket": "b-1"})
        with pytest.raises(StorageError, match=re.escape("download of s3://b-1/a.png failed")):
            await provider.download("s3://b-1/a.png", tmp_path / "in")
    finally:
        await provider.aclose()


async def test_request_credentials_override_default_chain_and_never_leak(
    s3_server: S3Server, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Our own loggers at DEBUG, libraries at INFO (botocore's DEBUG output prints request headers verbatim).
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="comfyui_api")
    secret = "request-secret-key-7f3a9b2c"
    token = "request-session-token-1e5d"
    # The provider's own endpoint is dead; only the request's credential (with its endpoint) can reach moto.
    provider = S3Provider(region="us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", timeout_s=10)
    credential = Credential(
        url_pattern=f"s3://{bucket}/**",
        auth={
            "type": "s3",
            "access_key_id": "request-key",
            "secret_access_key": secret,
            "session_token": token,
            "endpoint_url": s3_server.endpoint_url,
        },
    )
    s3_server.admin_client().put_object(Bucket=bucket, Key="in/cat.jpg", Body=b"jpeg bytes")
    try:
        path = await provider.download(f"s3://{bucket}/in/cat.jpg", tmp_path / "in", credentials=[credential])
        assert path.read_bytes() == b"jpeg bytes"

        source = write_file(tmp_path, "dog.png", b"png bytes")
        uploaded = await provider.upload(
            source, key="out/dog.png", content_type="image/png", options={"bucket": bucket}, credentials=[credential]
        )
        assert uploaded.url == f"s3://{bucket}/out/dog.png"

        with pytest.raises(InputStagingError) as caught:
            await provider.download(f"s3://{bucket}/in/missing.jpg", tmp_path / "in", credentials=[credential])
    finally:
        await provider.aclose()

    assert_no_secret([secret, token], str(caught.value), repr(caught.value), repr(credential))
    assert_no_secret([secret, token], all_log_text(caplog))
