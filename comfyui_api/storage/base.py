"""The storage protocol: one interface every provider (S3, Azure Blob, Hugging Face, HTTP) implements, and the values
it is driven by (per-request credentials, upload targets).

Providers move bytes between local files and URLs. They know nothing about jobs, ComfyUI or HTTP routes. Every
call has a timeout; failures raise `StorageError` (never return a half-success).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from comfyui_api.errors import InvalidRequest


@dataclass(frozen=True)
class Credential:
    """Per-request credentials for downloads whose URL matches `url_pattern` (a glob or prefix).

    `auth` is one of: {"type": "bearer", "token"}, {"type": "basic", "username", "password"},
    {"type": "header", "name", "value"}, {"type": "query", "name", "value"},
    {"type": "s3", "access_key_id", "secret_access_key", "session_token"?, "region"?, "endpoint_url"?}.
    Never echoed in a response, webhook or log line.
    """

    url_pattern: str
    auth: Mapping[str, Any] = field(repr=False)  # secrets: kept out of repr (and so out of logs)


@dataclass(frozen=True)
class UploadTarget:
    """Where outputs go. `provider` is a storage registry name: "s3", "azure_blob", "hf" or "http"; `options` are
    that provider's request fields (e.g. {"bucket", "prefix"} for s3)."""

    provider: str
    options: Mapping[str, Any]
    run_async: bool = False


class UploadSource(Protocol):
    """A local file to upload (a job's output): where it is, its name and its content type."""

    @property
    def path(self) -> Path | None: ...

    @property
    def filename(self) -> str: ...

    @property
    def content_type(self) -> str: ...


@dataclass(frozen=True)
class UploadedFile:
    url: str  # what the caller gets back (s3://..., https://..., or a presigned URL)
    size_bytes: int


class ProviderNotConfigured(Exception):
    """Raised by a provider's constructor when its settings are absent (as opposed to present but wrong)."""


@dataclass(frozen=True)
class StorageEvent:
    """A finished transfer, for system events. `name` is "storage.file_uploaded" or "storage.file_downloaded";
    `url` is already redacted (no userinfo, no query values)."""

    name: str
    provider: str
    url: str
    size_bytes: int
    duration_ms: float
    job_id: str | None = None

    def data(self) -> dict[str, Any]:
        """The `data` of the system event (compat: salad's url, size, duration; plus provider and job id)."""
        return {
            "url": self.url,
            "provider": self.provider,
            "size": self.size_bytes,
            "duration": round(self.duration_ms, 3),
            "id": self.job_id,
        }


StorageEventSink = Callable[[StorageEvent], None]
"""Receives storage events. Must not block: implementations put the event on a queue."""


def reject_unknown_options(options: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raise InvalidRequest naming the first (sorted) option of `options` that is not in `known`."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidRequest(f"unknown option {unknown[0]!r}; known: {', '.join(known)}", field=unknown[0])


@runtime_checkable
class StorageProvider(Protocol):
    """One storage backend. `name` is the request key family ("s3", "azure_blob", "hf", "http")."""

    name: str

    def can_download(self, url: str) -> bool:
        """True when this provider owns URLs like `url` (e.g. s3://..., a blob URL, a huggingface resolve URL)."""
        ...

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        """Stream `url` into a new file inside `dest_dir` and return its path. The file name keeps a meaningful
        extension (from the URL, Content-Disposition or Content-Type). Raises StorageError or InputStagingError."""
        ...

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        """Raise InvalidRequest naming the field when a request's upload options are wrong."""
        ...

    async def upload(
        self,
        path: Path,
        *,
        key: str,
        content_type: str,
        options: Mapping[str, Any],
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        """Stream the local file at `path` to the provider under `key` (a relative object name such as
        `<prefix><job id>/<filename>`, built by the caller). Raises StorageError on any failure."""
        ...

    async def aclose(self) -> None: ...
