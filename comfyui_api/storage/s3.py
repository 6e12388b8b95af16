"""S3-compatible object storage (AWS, R2, MinIO, GCS in HMAC mode) through aiobotocore: downloads of
`s3://bucket/key`, uploads with the request options `{bucket, prefix, presign_expires_s}`, multipart for large files.
Memory stays bounded: parts are streamed from disk, never held whole. Knows nothing of jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from comfyui_api.errors import ComfyApiError, InputStagingError, InvalidRequest, StorageError
from comfyui_api.storage.base import Credential, ProviderNotConfigured, UploadedFile, reject_unknown_options
from comfyui_api.storage.credentials import S3Credentials, describe_error, s3_credentials_for, secrets_of
from comfyui_api.storage.filenames import download_filename
from comfyui_api.storage.localfiles import CHUNK_BYTES, FileSlice, IncomingFile, check_size, file_size
from comfyui_api.storage.outbound import OutboundGuard

logger = logging.getLogger(__name__)

MAX_PRESIGN_EXPIRES_S = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than 7 days
_MAX_PARTS = 10_000  # S3's limit on parts per multipart upload
_MIB = 1024 * 1024
_BUCKET_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,254}$")
_OPTIONS = ("bucket", "prefix", "presign_expires_s")
# Downloads failing with these are the request's fault (wrong URL or no access), not an outage.
_CALLER_ERRORS = {"NoSuchKey", "NoSuchBucket", "NotFound", "404", "AccessDenied", "403", "InvalidBucketName"}


def parse_s3_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    key = parts.path[1:]
    if parts.scheme.lower() != "s3" or not parts.netloc or not key:
        raise InputStagingError("an S3 URL must look like s3://bucket/key")
    return parts.netloc, key


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


class S3Provider:
    """One S3-compatible endpoint. The default client uses the standard AWS credential chain; a request's `s3`
    credential (matched against `s3://bucket/key`) gets a client of its own for that transfer."""

    name = "s3"

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None,
        timeout_s: float,
        part_size_bytes: int = 8 * _MIB,
        max_parallel_parts: int = 4,
        multipart_threshold_bytes: int = 16 * _MIB,
        guard: OutboundGuard | None = None,
    ):
        """`guard` checks a request's own `endpoint_url` (AWS_ENDPOINT_URL is the operator's and trusted)."""
        if not region and not endpoint_url:
            raise ProviderNotConfigured("set AWS_REGION (or AWS_DEFAULT_REGION) or AWS_ENDPOINT_URL to enable S3")
        self._region = region
        self._endpoint_url = endpoint_url
        self._timeout_s = timeout_s
        self._part_size_bytes = max(part_size_bytes, 5 * _MIB)  # S3's minimum part size
        self._max_parallel_parts = max(1, max_parallel_parts)
        self._multipart_threshold_bytes = multipart_threshold_bytes
        self._guard = guard
        self._session = AioSession()
        self._default_client: Any = None
        self._stack = contextlib.AsyncExitStack()
        self._lock = asyncio.Lock()

    def _config(self, endpoint_url: str | None) -> AioConfig:
        return AioConfig(
            connect_timeout=min(30.0, self._timeout_s),
            read_timeout=min(120.0, self._timeout_s),
            retries={"max_attempts": 3, "mode": "standard"},
            # Custom endpoints (MinIO, R2, GCS, moto) want path-style addressing.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            signature_version="s3v4",
            # Newer botocore adds CRC checksums by default, which several S3-compatible services reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=max(10, self._max_parallel_parts * 2),
        )

    @contextlib.asynccontextmanager
    async def _client(self, explicit: S3Credentials | None) -> AsyncIterator[Any]:
        if explicit is None:
            async with self._lock:
                if self._default_client is None:
                    creator = self._session.create_client(
                        "s3",
                        region_name=self._region,
                        endpoint_url=self._endpoint_url,
                        config=self._config(self._endpoint_url),
                    )
                    self._default_client = await self._stack.enter_async_context(creator)
            yield self._default_client
            return
        if explicit.endpoint_url and self._guard is not None:
            await self._guard.check_url(explicit.endpoint_url, field="credentials.auth.endpoint_url")
        endpoint_url = explicit.endpoint_url or self._endpoint_url
        async with self._session.create_client(
            "s3",
            region_name=explicit.region or self._region,
            endpoint_url=endpoint_url,
            aws_access_key_id=explicit.access_key_id,
            aws_secret_access_key=explicit.secret_access_key,
            aws_session_token=explicit.session_token,
            config=self._config(endpoint_url),
        ) as client:
            yield client

    def can_download(self, url: str) -> bool:
        return urlsplit(url).scheme.lower() == "s3"

    def _error(self, exc: BaseException, what: str, secrets: Sequence[str], *, downloading: bool) -> ComfyApiError:
        exc = _first_leaf(exc)
        if isinstance(exc, ComfyApiError):
            return exc
        detail = describe_error(exc, secrets)
        if downloading and isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _CALLER_ERRORS:
                return InputStagingError(f"{what} failed: {detail}")
        return StorageError(f"{what} failed: {detail}", provider=self.name)

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        bucket, key = parse_s3_url(url)
        explicit = s3_credentials_for(url, credentials)
        secrets = secrets_of(credentials)
        try:
            async with self._client(explicit) as client:
                answer = await client.get_object(Bucket=bucket, Key=key)
                async with answer["Body"] as body:
                    check_size(answer.get("ContentLength"), max_bytes, url)
                    async with IncomingFile(dest_dir, max_bytes=max_bytes, what=url) as sink:
                        name = PurePosixPath(key).name
                        sink.name(download_filename(name, content_type=answer.get("ContentType")))
                        while chunk := await body.read(CHUNK_BYTES):
                            await sink.write(chunk)
        except (ClientError, BotoCoreError, OSError, BaseExceptionGroup) as exc:
            raise self._error(exc, f"download of {url}", secrets, downloading=True) from None
        assert sink.path is not None
        return sink.path

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        bucket = options.get("bucket")
        if not isinstance(bucket, str) or not _BUCKET_NAME.match(bucket):
            raise InvalidRequest("bucket must be a valid bucket name (letters, digits, '.', '-')", field="bucket")
        prefix = options.get("prefix", "")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequest("prefix must be a string", field="prefix")
        expires = options.get("presign_expires_s")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, int) or not 1 <= expires <= MAX_PRESIGN_EXPIRES_S
        ):
            raise InvalidRequest(
                f"presign_expires_s must be an integer from 1 to {MAX_PRESIGN_EXPIRES_S}", field="presign_expires_s"
            )
        reject_unknown_options(options, _OPTIONS)

    async def upload(
        self,
        path: Path,
        *,
        key: str,
        content_type: str,
        options: Mapping[str, Any],
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        bucket = str(options["bucket"])
        url = f"s3://{bucket}/{key}"
        explicit = s3_credentials_for(url, credentials)
        secrets = secrets_of(credentials)
        size_bytes = await file_size(path)
        try:
            async with self._client(explicit) as client:
                if size_bytes <= self._multipart_threshold_bytes:
                    with await asyncio.to_thread(FileSlice, path, 0, size_bytes) as body:
                        await client.put_object(
                            Bucket=bucket, Key=key, Body=body, ContentLength=size_bytes, ContentType=content_type
                        )
                else:
                    await self._upload_multipart(client, path, bucket, key, content_type, size_bytes)
                expires = options.get("presign_expires_s")
                if expires:
                    params = {"Bucket": bucket, "Key": key}
                    url = await client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires))
        except (ClientError, BotoCoreError, OSError, BaseExceptionGroup) as exc:
            raise self._error(exc, f"upload to s3://{bucket}/{key}", secrets, downloading=False) from None
        return UploadedFile(url=url, size_bytes=size_bytes)

    def part_size_for(self, size_bytes: int) -> int:
        """Parts of `part_size_bytes`, grown (in whole MiB) when the file would need more than 10,000 parts."""
        needed = math.ceil(size_bytes / _MAX_PARTS)
        return max(self._part_size_bytes, math.ceil(needed / _MIB) * _MIB)

    async def _upload_multipart(
        self, client: Any, path: Path, bucket: str, key: str, content_type: str, size_bytes: int
    ) -> None:
        part_bytes = self.part_size_for(size_bytes)
        created = await client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)
        upload_id = created["UploadId"]
        etags: dict[int, str] = {}
        offsets = iter(range(0, size_bytes, part_bytes))

        async def send_parts() -> None:
            # Workers share one iterator; each part is streamed from disk (FileSlice), never held whole.
            for offset in offsets:
                number = offset // part_bytes + 1
                length = min(part_bytes, size_bytes - offset)
                with await asyncio.to_thread(FileSlice, path, offset, length) as body:
                    answer = await client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=body,
                        ContentLength=length,
                    )
                etags[number] = answer["ETag"]

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._max_parallel_parts, math.ceil(size_bytes / part_bytes))):
                    group.create_task(send_parts())
            parts = [{"PartNumber": number, "ETag": etags[number]} for number in sorted(etags)]
            await client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Leave no orphaned parts behind (they are billed); best effort, bounded.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id), timeout=10.0
                )
            raise

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._default_client = None
