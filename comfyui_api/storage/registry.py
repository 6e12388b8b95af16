"""The storage registry: the providers configured at start-up, which one serves a URL or an upload target, object
keys, bounded upload concurrency, a timeout on every transfer, and storage events.

Built once with `StorageRegistry.from_settings(settings.storage)` and closed with `aclose()`. It never reads the
environment and never raises HTTP errors: callers get InvalidRequest (400), InputStagingError (400) or StorageError.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyui_api.errors import InvalidRequest, StorageError
from comfyui_api.settings import StorageSettings
from comfyui_api.storage.base import (
    Credential,
    ProviderNotConfigured,
    StorageEvent,
    StorageEventSink,
    StorageProvider,
    UploadedFile,
    UploadSource,
    UploadTarget,
)
from comfyui_api.storage.credentials import redact_url, scrub, secrets_of, validate_credentials
from comfyui_api.storage.filenames import DEFAULT_CONTENT_TYPE, content_type_for, path_escape, safe_filename
from comfyui_api.storage.outbound import OutboundGuard

logger = logging.getLogger(__name__)

# Request field that carries each provider's upload options (compat: salad's request keys).
UPLOAD_REQUEST_KEYS: Mapping[str, str] = {
    "s3": "s3",
    "azure_blob": "azure_blob_upload",
    "hf": "hf_upload",
    "http": "http_upload",
}
# Option naming the object-key prefix, per provider.
_PREFIX_OPTIONS: Mapping[str, str] = {"s3": "prefix", "azure_blob": "blob_prefix", "hf": "directory"}
# Options the registry itself handles; providers never see them.
# `key_style`: "job" (default) -> <prefix><job id>/<filename>; "flat" -> <prefix><filename> (compat: salad).
# `async`: salad's flag inside the target object; UploadTarget.run_async carries it.
_REGISTRY_OPTIONS = ("key_style", "async")
KEY_STYLES = ("job", "flat")


@dataclass(frozen=True)
class ProviderState:
    name: str
    available: bool
    reason: str | None = None  # why it is unavailable


class StorageRegistry:
    """Every storage provider the server knows, configured or not, with the reason when not."""

    def __init__(
        self,
        providers: Mapping[str, StorageProvider],
        *,
        unavailable: Mapping[str, str] | None = None,
        transfer_timeout_s: float = 600.0,
        max_parallel_uploads: int = 4,
        on_event: StorageEventSink | None = None,
    ):
        self._providers = dict(providers)
        self._unavailable = dict(unavailable or {})
        self._transfer_timeout_s = transfer_timeout_s
        self._upload_slots = asyncio.Semaphore(max(1, max_parallel_uploads))
        self._on_event = on_event

    @classmethod
    def from_settings(
        cls,
        settings: StorageSettings,
        *,
        guard: OutboundGuard | None = None,
        on_event: StorageEventSink | None = None,
    ) -> StorageRegistry:
        """Initialise every configured provider (HTTP always). One that is not configured or fails to initialise is
        recorded with its reason and logged; requests naming it get a 400 saying why. `guard` checks the URLs
        requests bring (http(s) downloads and uploads, per-request S3 endpoints)."""
        # Imported here so that importing the registry does not pull in every SDK.
        from comfyui_api.storage.azure import AzureBlobProvider
        from comfyui_api.storage.hf import HuggingFaceProvider
        from comfyui_api.storage.http import HttpProvider
        from comfyui_api.storage.s3 import S3Provider

        timeout_s = settings.transfer_timeout_s
        header = None
        if settings.http_auth_header_name and settings.http_auth_header_value:
            header = (settings.http_auth_header_name, settings.http_auth_header_value)
        factories: dict[str, Any] = {
            "s3": lambda: S3Provider(
                region=settings.aws_region, endpoint_url=settings.aws_endpoint_url, timeout_s=timeout_s, guard=guard
            ),
            "azure_blob": lambda: AzureBlobProvider(
                timeout_s=timeout_s,
                connection_string=settings.azure_connection_string,
                account=settings.azure_account,
                key=settings.azure_key,
                sas_token=settings.azure_sas_token,
            ),
            "hf": lambda: HuggingFaceProvider(
                endpoint=settings.hf_endpoint, token=settings.hf_token, timeout_s=timeout_s
            ),
            "http": lambda: HttpProvider(timeout_s=timeout_s, auth_header=header, guard=guard),
        }
        secrets = secrets_of(
            (),
            extra=(
                settings.azure_connection_string,
                settings.azure_key,
                settings.azure_sas_token,
                settings.hf_token,
                settings.http_auth_header_value,
            ),
        )
        providers: dict[str, StorageProvider] = {}
        unavailable: dict[str, str] = {}
        for name, factory in factories.items():
            try:
                providers[name] = factory()
            except ProviderNotConfigured as exc:
                unavailable[name] = f"not configured ({exc})"
                logger.info("storage provider %s is off: %s", name, exc)
            except Exception as exc:  # start-up boundary: record why, keep serving the other providers
                unavailable[name] = scrub(f"failed to initialise: {type(exc).__name__}: {exc}", secrets)
                logger.warning("storage provider %s is unavailable: %s", name, unavailable[name])
        logger.info("storage providers available: %s", ", ".join(sorted(providers)) or "none")
        return cls(
            providers,
            unavailable=unavailable,
            transfer_timeout_s=timeout_s,
            max_parallel_uploads=settings.max_parallel_uploads,
            on_event=on_event,
        )

    def states(self) -> list[ProviderState]:
        names = sorted(set(self._providers) | set(self._unavailable))
        return [ProviderState(name, name in self._providers, self._unavailable.get(name)) for name in names]

    def provider_for_upload(self, name: str) -> StorageProvider:
        """The provider called `name`; InvalidRequest (naming the request field) when unknown or unavailable."""
        key = UPLOAD_REQUEST_KEYS.get(name, name)
        if name in self._providers:
            return self._providers[name]
        if name in self._unavailable:
            raise InvalidRequest(f"{key}: {name} storage is not available: {self._unavailable[name]}", field=key)
        known = ", ".join(sorted(UPLOAD_REQUEST_KEYS))
        raise InvalidRequest(f"unknown storage provider {name!r}; known: {known}", field="upload")

    def downloader_for(self, url: str) -> StorageProvider:
        """The provider that downloads `url`: s3:// -> S3; the Azure account's blob URLs -> Azure; Hub resolve URLs
        -> Hugging Face; any other http(s) URL -> HTTP."""
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme == "s3":
            if "s3" in self._providers:
                return self._providers["s3"]
            reason = self._unavailable.get("s3", "not configured")
            raise InvalidRequest(f"{redact_url(url)}: S3 downloads are not available: {reason}")
        for name in ("azure_blob", "hf", "http"):
            provider = self._providers.get(name)
            if provider is not None and provider.can_download(url):
                return provider
        raise InvalidRequest(f"{redact_url(url)}: unsupported URL; use http(s)://, s3:// or a storage URL")

    def validate_credentials(self, credentials: Sequence[Credential]) -> None:
        validate_credentials(credentials)

    def validate_target(self, target: UploadTarget) -> None:
        """Raise InvalidRequest naming the request field (e.g. `s3.bucket`) when a target is unusable."""
        key = UPLOAD_REQUEST_KEYS.get(target.provider, target.provider)
        provider = self.provider_for_upload(target.provider)
        if not isinstance(target.options, Mapping):
            raise InvalidRequest(f"{key} must be an object", field=key)
        style = target.options.get("key_style", "job")
        if style not in KEY_STYLES:
            raise InvalidRequest(f"{key}.key_style must be one of: {', '.join(KEY_STYLES)}", field=f"{key}.key_style")
        prefix_option = _PREFIX_OPTIONS.get(target.provider)
        prefix = target.options.get(prefix_option) if prefix_option else None
        if isinstance(prefix, str) and path_escape(prefix) is not None:
            field = f"{key}.{prefix_option}"
            raise InvalidRequest(
                f"{field} must be a relative key prefix: no leading '/', no '..' segment, no NUL", field=field
            )
        try:
            provider.validate_upload_options(self._provider_options(target))
        except InvalidRequest as exc:
            field = f"{key}.{exc.field}" if exc.field else key
            raise InvalidRequest(f"{field}: {exc.message}", field=field) from None

    @staticmethod
    def _provider_options(target: UploadTarget) -> dict[str, Any]:
        return {k: v for k, v in target.options.items() if k not in _REGISTRY_OPTIONS}

    def object_key(self, target: UploadTarget, job_id: str, filename: str) -> str:
        """`<prefix><job id>/<filename>`, or `<prefix><filename>` with `key_style: "flat"`."""
        prefix_option = _PREFIX_OPTIONS.get(target.provider)
        prefix = str(target.options.get(prefix_option) or "") if prefix_option else ""
        if target.provider == "hf":
            prefix = prefix.strip("/")
            prefix = f"{prefix}/" if prefix else ""
        name = safe_filename(filename, fallback="output")
        if target.options.get("key_style", "job") == "flat":
            return f"{prefix}{name}"
        return f"{prefix}{safe_filename(job_id, fallback='job')}/{name}"

    def _emit(self, event: StorageEvent) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(event)
        except Exception:  # a broken subscriber must not fail a transfer
            logger.exception("storage event subscriber failed for %s", event.name)

    @contextlib.asynccontextmanager
    async def _bounded(self, what: str, provider: str) -> AsyncIterator[None]:
        """One transfer within the transfer timeout; an overrun or a local file error becomes a StorageError."""
        try:
            async with asyncio.timeout(self._transfer_timeout_s):
                yield
        except TimeoutError:
            raise StorageError(
                f"{what} did not finish within {self._transfer_timeout_s:g} s", provider=provider
            ) from None
        except OSError as exc:
            raise StorageError(f"{what} failed: {exc.strerror or exc}", provider=provider) from None

    async def download(
        self,
        url: str,
        dest_dir: Path,
        credentials: Sequence[Credential] = (),
        max_bytes: int | None = None,
        *,
        job_id: str | None = None,
    ) -> Path:
        """Download `url` into a new file in `dest_dir` (unique name, meaningful extension) within the transfer
        timeout. Raises InvalidRequest, InputStagingError or StorageError; leaves no partial file behind."""
        provider = self.downloader_for(url)
        shown = redact_url(url)
        started = time.monotonic()
        async with self._bounded(f"download of {shown}", provider.name):
            path = await provider.download(url, dest_dir, credentials=credentials, max_bytes=max_bytes)
        size_bytes = path.stat().st_size
        duration_ms = (time.monotonic() - started) * 1000
        logger.info("downloaded %s (%d bytes, %.0f ms) via %s", shown, size_bytes, duration_ms, provider.name)
        self._emit(StorageEvent("storage.file_downloaded", provider.name, shown, size_bytes, duration_ms, job_id))
        return path

    async def upload(
        self,
        output: UploadSource,
        target: UploadTarget,
        job_id: str,
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        """Upload one output's local file to `target` under `object_key(...)`. At most `max_parallel_uploads` run
        at once; each within the transfer timeout. Raises StorageError (never returns a half-success)."""
        provider = self.provider_for_upload(target.provider)
        if output.path is None or not output.path.is_file():
            raise StorageError(f"output {output.filename!r} has no local file to upload", provider=provider.name)
        key = self.object_key(target, job_id, output.filename)
        content_type = output.content_type
        if not content_type or content_type == DEFAULT_CONTENT_TYPE:
            content_type = content_type_for(output.filename)
        options = self._provider_options(target)
        async with self._upload_slots:
            started = time.monotonic()
            async with self._bounded(f"upload of {key}", provider.name):
                uploaded = await provider.upload(
                    output.path, key=key, content_type=content_type, options=options, credentials=credentials
                )
        duration_ms = (time.monotonic() - started) * 1000
        shown = redact_url(uploaded.url)
        logger.info("uploaded %s (%d bytes, %.0f ms) via %s", key, uploaded.size_bytes, duration_ms, provider.name)
        self._emit(
            StorageEvent("storage.file_uploaded", provider.name, shown, uploaded.size_bytes, duration_ms, job_id)
        )
        return uploaded

    async def aclose(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception:  # shutdown boundary: close the rest regardless
                logger.exception("closing storage provider %s failed", provider.name)
