"""Named model downloads into ComfyUI's model folders (what POST /download asks for): validate the request, fetch
through the model cache, place the file in `<model_dir>/<model_type>/`, or run all that in the background.

Public surface:
    library = ModelLibrary(cache, model_dir, folders=...)
    library.validate(url, model_type, filename)               # InvalidRequest naming the field
    result = await library.download(url, model_type, filename, credentials)   # DownloadResult
    library.start_download(...)                               # same, in the background; failures are logged
    await library.aclose()

Files fetched here are installed on purpose, so they are kept out of LRU eviction (like manifest models). This
module knows nothing about HTTP; `api/downloads.py` adapts it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from comfyui_api.errors import ComfyApiError, InvalidRequest, RequestError
from comfyui_api.models.cache import ModelCache
from comfyui_api.models.loaders import COMFY_MODEL_FOLDERS
from comfyui_api.models.urls import cache_url, is_url, safe_filename
from comfyui_api.storage.base import Credential

log = logging.getLogger(__name__)

_MAX_FILENAME_BYTES = 255  # ext4, XFS, NTFS and most others
# Device names Windows refuses as file names (a model folder may be an SMB share or end up on Windows).
_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", *(f"COM{n}" for n in range(1, 10)), *(f"LPT{n}" for n in range(1, 10))}
)

DEFAULT_URL_SCHEMES = frozenset({"http", "https", "s3"})


@dataclass(frozen=True)
class DownloadResult:
    url: str  # without signatures or tokens
    model_type: str
    filename: str  # the name ComfyUI lists (may differ from the one asked for when that name was taken)
    path: Path
    size_bytes: int
    duration_s: float


UrlCheck = Callable[[str, str], Awaitable[None]]
"""`(url, field)`: returns when a request may make us fetch `url`, raises URLRefused naming `field` when not."""


class ModelLibrary:
    """`folders` are the model types accepted (ComfyUI's folder keys); `url_schemes` those the downloader serves."""

    def __init__(
        self,
        cache: ModelCache,
        model_dir: Path,
        *,
        folders: Iterable[str] = COMFY_MODEL_FOLDERS,
        url_schemes: Iterable[str] = DEFAULT_URL_SCHEMES,
        url_check: UrlCheck | None = None,
    ):
        self.cache = cache
        self._url_check = url_check
        self.model_dir = model_dir
        self.folders = frozenset(folders)
        self.url_schemes = frozenset(s.lower() for s in url_schemes)
        self._background: set[asyncio.Task[DownloadResult]] = set()

    async def check_reachable(self, url: str) -> None:
        """Raise URLRefused naming `url` when an http(s) URL leads where request URLs may not go."""
        if self._url_check is not None and urlsplit(url).scheme.lower() in ("http", "https"):
            await self._url_check(url, "url")

    def validate(self, url: object, model_type: object, filename: object = None) -> None:
        """Raise InvalidRequest naming `url`, `model_type` or `filename` when one is unusable."""
        if not isinstance(url, str) or not is_url(url):
            raise InvalidRequest("url must be an absolute URL such as https://host/model.safetensors", field="url")
        scheme = urlsplit(url).scheme.lower()
        if scheme not in self.url_schemes:
            raise InvalidRequest(
                f"url scheme {scheme}:// is not supported; use one of {', '.join(sorted(self.url_schemes))}",
                field="url",
            )
        if not urlsplit(url).netloc:
            raise InvalidRequest("url has no host", field="url")
        if not isinstance(model_type, str) or model_type not in self.folders:
            raise InvalidRequest(
                f"unknown model_type {model_type!r}; known types: {', '.join(sorted(self.folders))}",
                field="model_type",
            )
        if filename is not None and (not isinstance(filename, str) or safe_filename(filename) != filename):
            raise InvalidRequest(
                "filename must be a plain file name (no folders, no leading dot), e.g. model.safetensors",
                field="filename",
            )
        if filename is not None and len(filename.encode("utf-8")) > _MAX_FILENAME_BYTES:
            raise InvalidRequest(f"filename is longer than {_MAX_FILENAME_BYTES} bytes", field="filename")
        if filename is not None and filename.split(".", 1)[0].upper() in _RESERVED_NAMES:
            raise InvalidRequest(f"filename {filename!r} is a reserved device name", field="filename")

    async def download(
        self,
        url: str,
        model_type: str,
        filename: str | None = None,
        credentials: Sequence[Credential] = (),
    ) -> DownloadResult:
        """Fetch `url` into `<model_dir>/<model_type>/<filename or the URL's name>`; a repeat is a no-op."""
        self.validate(url, model_type, filename)
        started = time.monotonic()
        with self.cache.pin() as lease:
            try:
                model = await self.cache.fetch(url, credentials, lease=lease, persistent=True)
            except RequestError as exc:  # e.g. the URL answered 404: the caller's `url` is at fault
                exc.field = exc.field or "url"
                raise
            folder = self.model_dir / model_type
            placed = await self.cache.place(model, folder / (filename or model.filename))
        duration_s = time.monotonic() - started
        log.info("model %s is installed as %s (%d bytes, %.2fs)", model.url, placed, model.size_bytes, duration_s)
        return DownloadResult(
            url=model.url,
            model_type=model_type,
            filename=placed.name,
            path=placed,
            size_bytes=model.size_bytes,
            duration_s=duration_s,
        )

    def start_download(
        self,
        url: str,
        model_type: str,
        filename: str | None = None,
        credentials: Sequence[Credential] = (),
    ) -> None:
        """Validate now, download in the background; the outcome is logged (and the cache emits its events)."""
        self.validate(url, model_type, filename)
        task = asyncio.create_task(self.download(url, model_type, filename, credentials), name="model-install")
        self._background.add(task)
        task.add_done_callback(functools.partial(self._finished, cache_url(url)))

    async def wait_background(self, timeout_s: float) -> None:
        """Wait for the background downloads started so far (their failures are logged, not raised)."""
        tasks = list(self._background)
        if tasks:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, shown_url: str, task: asyncio.Task[DownloadResult]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        message = error.message if isinstance(error, ComfyApiError) else f"{type(error).__name__}: {error}"
        log.error("background download of model %s failed: %s", shown_url, message)
