"""Azure Blob Storage through azure.storage.blob.aio: downloads of blob URLs (the configured account's, or any with a
SAS in the URL), uploads with the request options `{container, blob_prefix}`. Transfers go in bounded blocks.
Knows nothing of jobs; the account key and SAS never reach a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ExponentialRetry

from comfyui_api.errors import InputStagingError, InvalidRequest, StorageError
from comfyui_api.storage.base import Credential, ProviderNotConfigured, UploadedFile, reject_unknown_options
from comfyui_api.storage.credentials import describe_error, redact_url, secrets_of, strip_secrets
from comfyui_api.storage.filenames import download_filename
from comfyui_api.storage.localfiles import IncomingFile, check_size, file_size

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
_OPTIONS = ("container", "blob_prefix")
_PUBLIC_BLOB_HOST_SUFFIXES = (".blob.core.windows.net", ".blob.core.usgovcloudapi.net", ".blob.core.chinacloudapi.cn")


class AzureBlobProvider:
    """One Azure storage account, from a connection string, an account + key, or an account + SAS token."""

    name = "azure_blob"

    def __init__(
        self,
        *,
        timeout_s: float,
        connection_string: str | None = None,
        account: str | None = None,
        key: str | None = None,
        sas_token: str | None = None,
    ):
        self._client_options: dict[str, Any] = {
            # Bounded memory: one PUT/GET never carries more than a few MiB; larger blobs go in blocks. Blocks of
            # 1 MiB because aiohttp warns (ResourceWarning) about raw bytes bodies over 1 MiB.
            "max_single_put_size": _MIB,
            "max_block_size": _MIB,
            "max_single_get_size": 4 * _MIB,
            "max_chunk_get_size": 4 * _MIB,
            "connection_timeout": min(30.0, timeout_s),
            "read_timeout": min(120.0, timeout_s),
            # The SDK's default backoff starts at 15 s; a dead endpoint should fail in seconds, not minutes.
            "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=1, retry_total=2, random_jitter_range=1),
        }
        self._secrets = tuple(s for s in (connection_string, key, sas_token) if s)
        if connection_string:
            self._service = BlobServiceClient.from_connection_string(connection_string, **self._client_options)
        elif account and (key or sas_token):
            url = f"https://{account}.blob.core.windows.net"
            if key:
                credential: Any = {"account_name": account, "account_key": key}
            else:
                credential = (sas_token or "").lstrip("?")
            self._service = BlobServiceClient(account_url=url, credential=credential, **self._client_options)
        elif account:
            raise ValueError("AZURE_STORAGE_ACCOUNT is set without AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN")
        else:
            raise ProviderNotConfigured(
                "set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT with a key or SAS token"
            )
        self._service_url = self._service.url.rstrip("/") + "/"

    def can_download(self, url: str) -> bool:
        if url.startswith(self._service_url):
            return True
        host = (urlsplit(url).hostname or "").lower()
        return host.endswith(_PUBLIC_BLOB_HOST_SUFFIXES)

    def _blob_for(self, url: str) -> BlobClient:
        has_sas = "sig" in parse_qs(urlsplit(url).query)
        if url.startswith(self._service_url) and not has_sas:
            container, _, blob = urlsplit(url).path.removeprefix(urlsplit(self._service_url).path).partition("/")
            if not container or not blob:
                raise InputStagingError(f"{redact_url(url)} does not name a container and a blob")
            return self._service.get_blob_client(unquote(container), unquote(blob))
        # Another account, or a SAS in the URL: the URL carries its own authority.
        return BlobClient.from_blob_url(url, **self._client_options)

    def _error(self, exc: BaseException, what: str, extra: Sequence[str], *, downloading: bool) -> Exception:
        detail = describe_error(exc, self._secrets + tuple(extra))
        detail = detail.split("\n", 1)[0]  # the service's XML body follows the first line
        code = getattr(exc, "error_code", None)
        if code:
            detail += f" (error code {code})"
        caller_fault = isinstance(exc, ResourceNotFoundError | ClientAuthenticationError) or (
            isinstance(exc, HttpResponseError) and exc.status_code in (400, 403, 404)
        )
        if downloading and caller_fault:
            return InputStagingError(f"{what} failed: {detail}")
        return StorageError(f"{what} failed: {detail}", provider=self.name)

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        shown = redact_url(url)
        extra = secrets_of((), urls=(url,))
        try:
            async with self._blob_for(url) as blob:
                stream = await blob.download_blob(max_concurrency=1)
                check_size(stream.size, max_bytes, shown)
                async with IncomingFile(dest_dir, max_bytes=max_bytes, what=shown) as sink:
                    content_type = stream.properties.content_settings.content_type
                    sink.name(download_filename(PurePosixPath(blob.blob_name).name, content_type=content_type))
                    async for chunk in stream.chunks():
                        await sink.write(chunk)
        except (AzureError, OSError) as exc:
            raise self._error(exc, f"download of {shown}", extra, downloading=True) from None
        assert sink.path is not None
        return sink.path

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        container = options.get("container")
        if not isinstance(container, str) or not 3 <= len(container) <= 63:
            raise InvalidRequest("container must be a container name of 3 to 63 characters", field="container")
        prefix = options.get("blob_prefix", "")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidRequest("blob_prefix must be a string", field="blob_prefix")
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
        container = str(options["container"])
        size_bytes = await file_size(path)
        blob = self._service.get_blob_client(container, key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
            try:
                await blob.upload_blob(
                    handle,
                    length=size_bytes,
                    overwrite=True,
                    content_settings=ContentSettings(content_type=content_type),
                    max_concurrency=4,
                )
            finally:
                handle.close()
        except (AzureError, OSError) as exc:
            raise self._error(exc, f"upload to {container}/{key}", (), downloading=False) from None
        finally:
            await blob.close()
        return UploadedFile(url=strip_secrets(blob.url), size_bytes=size_bytes)

    async def aclose(self) -> None:
        await self._service.close()
