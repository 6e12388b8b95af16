"""The model downloader seam and its default: a plain http(s) streaming download with per-request credentials.

`Downloader` is what the model cache calls: `await downloader(url, dest_dir, credentials) -> Path`, a new file inside
`dest_dir`. The app may inject a storage-aware one (s3://, Azure, Hugging Face); `HttpDownloader` needs nothing but
httpx. Nothing here knows about caching, model folders or jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import httpx

from comfyui_api.errors import StorageError
from comfyui_api.models.urls import cache_url, safe_filename, url_filename
from comfyui_api.storage.base import Credential, StorageProvider
from comfyui_api.storage.credentials import http_auth_for, matching_credential, pattern_matches

Downloader = Callable[[str, Path, Sequence[Credential]], Awaitable[Path]]
"""`(url, dest_dir, credentials) -> path of the new file inside dest_dir`; raises on failure."""

AccessCheck = Callable[[str, Sequence[Credential]], Awaitable[None]]
"""`(url, credentials)`: returns when these credentials may read `url`, raises StorageError when not. Used on cache
hits for files that needed auth, so a cached private model is never handed to a request that could not read it."""


class ProviderSource(Protocol):
    """Picks the storage provider that downloads a URL (`storage.registry.StorageRegistry` is one)."""

    def downloader_for(self, url: str) -> StorageProvider: ...


FREE_SPACE_RESERVE_BYTES = 1024**3  # a model download never fills the disk: ComfyUI and the system need room too


async def room_for_download(dest_dir: Path) -> int | None:
    """The largest file that may be downloaded into `dest_dir`: its free space less a reserve (None: unknown). A
    larger announced size is refused before a byte is written; one that grows past it is cut off."""
    try:
        usage = await asyncio.to_thread(shutil.disk_usage, dest_dir)
    except OSError:
        return None
    return max(0, usage.free - FREE_SPACE_RESERVE_BYTES)


def storage_downloader(source: ProviderSource) -> Downloader:
    """A Downloader that hands each URL to the storage provider owning it (s3://, Azure blob, Hugging Face, plain
    http(s) with the server's auth header), so model URLs reach everything input URLs reach. The provider is called
    directly, not through the registry's `download`: the model cache bounds the whole download by
    MODEL_DOWNLOAD_TIMEOUT_S (not STORAGE_TIMEOUT_S) and reports it as its own `storage.file_downloaded` event."""

    async def download(url: str, dest_dir: Path, credentials: Sequence[Credential] = ()) -> Path:
        provider = source.downloader_for(url)
        max_bytes = await room_for_download(dest_dir)
        return await provider.download(url, dest_dir, credentials=credentials, max_bytes=max_bytes)

    return download


_CHUNK_BYTES = 1024 * 1024
_DISPOSITION_STAR = re.compile(r"filename\*\s*=\s*([^']*)'[^']*'([^;]+)", re.IGNORECASE)
_DISPOSITION = re.compile(r'filename\s*=\s*"?([^";]+)"?', re.IGNORECASE)


def matching_credentials(url: str, credentials: Sequence[Credential]) -> list[Credential]:
    """The credentials whose `url_pattern` matches `url` (same rules as every other download)."""
    return [c for c in credentials if pattern_matches(c.url_pattern, url)]


def apply_http_credentials(url: str, credentials: Sequence[Credential]) -> tuple[str, dict[str, str]]:
    """The first matching bearer/basic/header/query credential as (url with its query parameters, headers)."""
    credential = matching_credential(url, credentials, auth_types=("bearer", "basic", "header", "query"))
    if credential is None:
        return url, {}
    extra = http_auth_for(credential)
    if extra.query:
        parts = urlsplit(url)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *extra.query])
        url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
    return url, dict(extra.headers)


def filename_from_response(response: httpx.Response, url: str) -> str:
    """Content-Disposition's file name when given, else the URL's last path segment, else `download`."""
    disposition = response.headers.get("content-disposition", "")
    name = ""
    star = _DISPOSITION_STAR.search(disposition)
    if star:
        name = unquote(star.group(2).strip().strip('"'), encoding=star.group(1) or "utf-8", errors="replace")
    elif plain := _DISPOSITION.search(disposition):
        name = plain.group(1).strip()
    name = safe_filename(name) or url_filename(str(response.url)) or url_filename(url)
    return name or "download"


class HttpDownloader:
    """Streams http(s) URLs to disk. `timeout_s` bounds one whole download; `idle_timeout_s` bounds each wait for
    the next bytes (a stalled server fails fast even when the whole download may take long)."""

    def __init__(
        self,
        *,
        timeout_s: float = 3600.0,
        idle_timeout_s: float = 60.0,
        connect_timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            follow_redirects=True,
            timeout=httpx.Timeout(idle_timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    async def __call__(self, url: str, dest_dir: Path, credentials: Sequence[Credential] = ()) -> Path:
        scheme = urlsplit(url).scheme.lower()
        shown = cache_url(url)
        if scheme not in ("http", "https"):
            raise StorageError(f"cannot download {shown}: only http(s) URLs are supported here", provider="http")
        request_url, headers = apply_http_credentials(url, credentials)
        dest: Path | None = None
        try:
            async with (
                asyncio.timeout(self._timeout_s),
                self._client.stream("GET", request_url, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    raise StorageError(
                        f"downloading {shown} failed: HTTP {response.status_code} {response.reason_phrase}",
                        provider="http",
                        details={"status_code": response.status_code},
                    )
                dest = dest_dir / filename_from_response(response, url)
                with dest.open("wb") as out:
                    async for chunk in response.aiter_bytes(_CHUNK_BYTES):
                        out.write(chunk)
        except TimeoutError:
            _discard(dest)
            raise StorageError(f"downloading {shown} took longer than {self._timeout_s:g}s", provider="http") from None
        except httpx.HTTPError as exc:
            _discard(dest)
            reason = str(exc).replace(request_url, shown).replace(url, shown)
            raise StorageError(f"downloading {shown} failed: {type(exc).__name__}: {reason}", provider="http") from None
        except BaseException:
            _discard(dest)
            raise
        return dest

    async def check_access(self, url: str, credentials: Sequence[Credential] = ()) -> None:
        """Ask for the first byte only; 2xx means readable."""
        shown = cache_url(url)
        request_url, headers = apply_http_credentials(url, credentials)
        headers["Range"] = "bytes=0-0"
        try:
            async with self._client.stream("GET", request_url, headers=headers) as response:
                status = response.status_code
        except httpx.HTTPError as exc:
            raise StorageError(f"checking access to {shown} failed: {type(exc).__name__}", provider="http") from None
        if status >= 400:
            raise StorageError(
                f"access to {shown} was refused: HTTP {status}", provider="http", details={"status_code": status}
            )

    async def aclose(self) -> None:
        await self._client.aclose()


def _discard(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
