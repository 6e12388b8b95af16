"""The model cache: URL -> one local file in CACHE_DIR, downloaded once, shared by concurrent requests, evicted
least-recently-used beyond LRU_CACHE_SIZE_GB, and placed into model folders by hard link or copy.

Public surface:
    cache = ModelCache(cache_dir, downloader=..., max_size_bytes=..., on_event=...)
    model = await cache.fetch(url, credentials, lease=lease)    # CachedModel; one download per URL at a time
    path = await cache.place(model, folder / name)               # hard link, else copy; idempotent
    lease = cache.pin(paths)   ...   lease.release()             # pinned files are never evicted
    await cache.aclose()

Layout: `<key><ext>` holds the bytes, `<key>.meta` (JSON) records the URL (secrets stripped), size, download time,
our own last-use time (the LRU order; never atime), whether auth was needed, and where the file was placed.
`key` hashes `urls.cache_url(url)`, so presigned variants of one URL share an entry. Downloads run in
`.tmp/` inside the cache dir and land by atomic rename. A hit on a file that needed auth is served only after the
new request proves it can read the URL (`access_check`). Manifest and POST /download files are `persistent`:
never evicted, not counted against the limit. This module never decides which folder a model belongs in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from comfyui_api.errors import StorageError
from comfyui_api.models.download import AccessCheck, Downloader, HttpDownloader, matching_credentials
from comfyui_api.models.placement import PlacementMethod, place_owned, remove_placement
from comfyui_api.models.records import (
    TEMP_DIR_NAME,
    CacheRecord,
    cache_key,
    meta_path,
    scan_cache_dir,
    size_is,
    write_record,
)
from comfyui_api.models.urls import (
    cache_url,
    extension_of,
    has_secret_params,
    safe_filename,
    url_extension,
    url_filename,
)
from comfyui_api.storage.base import Credential

log = logging.getLogger(__name__)

EventCallback = Callable[[str, Mapping[str, Any]], None]
"""`(event name, data)`: e.g. ("storage.file_deleted", {"url", "path", "size", ...}). Must not block."""


@dataclass(frozen=True)
class CachedModel:
    """One cached file. `filename` is the name it came with (the URL's, or the server's Content-Disposition)."""

    key: str
    path: Path
    url: str
    filename: str
    size_bytes: int
    auth_used: bool


class CachePin:
    """A lease on cache entries: while held, they are never evicted. Release once (more calls are no-ops); also a
    context manager. `paths` are the cached files it holds."""

    def __init__(self, cache: ModelCache):
        self._cache = cache
        self._keys: list[str] = []
        self._released = False

    def add(self, key: str) -> None:
        if self._released:
            raise RuntimeError("this pin was already released")
        self._keys.append(key)
        self._cache._pins[key] += 1

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._keys)

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(self._cache._path_of(key) for key in dict.fromkeys(self._keys) if key in self._cache._records)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for key in self._keys:
            self._cache._pins[key] -= 1
            if self._cache._pins[key] <= 0:
                del self._cache._pins[key]

    def __enter__(self) -> CachePin:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class ModelCache:
    """See the module docstring. `max_size_bytes` 0 turns eviction off; `clock` orders the LRU (epoch seconds)."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        downloader: Downloader | None = None,
        access_check: AccessCheck | None = None,
        max_size_bytes: int = 0,
        on_event: EventCallback | None = None,
        download_timeout_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ):
        self.cache_dir = cache_dir
        self.max_size_bytes = max_size_bytes
        self._http = HttpDownloader(timeout_s=download_timeout_s)
        self._downloader: Downloader = downloader or self._http
        self._access_check = access_check
        self._on_event = on_event
        self._download_timeout_s = download_timeout_s
        self._clock = clock
        self._records: dict[str, CacheRecord] = {}
        self._inflight: dict[str, asyncio.Task[CachedModel]] = {}
        self._pins: Counter[str] = Counter()
        self._opening: asyncio.Future[None] | None = None

    # ---- lifecycle ----

    async def open(self) -> None:
        """Create the cache dir, load the records, drop broken ones and temp leftovers, enforce the limit.
        Called by the first fetch when not called before; concurrent callers share one scan."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())
        await asyncio.shield(self._opening)

    async def _open(self) -> None:
        self._records = await asyncio.to_thread(scan_cache_dir, self.cache_dir)
        self.evict_over_limit()

    async def aclose(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._http.aclose()
        # No download is running any more: the shared temp folder can go.
        await asyncio.to_thread(shutil.rmtree, self.cache_dir / TEMP_DIR_NAME, True)

    # ---- public operations ----

    def pin(self, items: Iterable[Path | str | CachedModel] = ()) -> CachePin:
        """Pin cached files (by cache path, placed path, key or CachedModel); unknown paths are ignored."""
        lease = CachePin(self)
        for item in items:
            key = self._key_of(item)
            if key is not None:
                lease.add(key)
        return lease

    async def fetch(
        self,
        url: str,
        credentials: Sequence[Credential] = (),
        *,
        lease: CachePin | None = None,
        persistent: bool = False,
    ) -> CachedModel:
        """The cached file for `url`, downloading it when absent. Concurrent calls for one URL share a download.
        With `lease`, the entry is pinned before anything is awaited, so it cannot be evicted under the caller."""
        await self.open()
        key = cache_key(url)
        if lease is not None:
            lease.add(key)
        record = self._records.get(key)
        if record is not None and self._intact(record) and await self._may_read(record, url, credentials):
            self._touch(record, persistent=persistent)
            return self._model(record)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._download(key, url, credentials, persistent), name=f"model-download-{key}")
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        model = await asyncio.shield(task)
        record = self._records.get(key)
        if record is not None and persistent and not record.persistent:
            self._touch(record, persistent=True)
        return model

    async def place(self, model: CachedModel, target: Path, *, replace: bool = False) -> Path:
        """Put the cached file at `target` (hard link, else copy) and remember it, so eviction removes it too.

        When `target` already holds another file: with `replace` it is overwritten, otherwise the model is placed
        beside it as `<stem>.<key8><ext>` and that path is returned."""
        record = self._records.get(model.key)
        if record is None or not self._intact(record):
            raise StorageError(f"{model.url} is no longer in the model cache", provider="cache")
        with self.pin([model.key]):
            source = self._path_of(model.key)
            copies = frozenset(path for path, method in record.placements.items() if method == "copy")
            placement = await asyncio.to_thread(
                place_owned, source, target, copies=copies, replace=replace, alt_tag=model.key[:8]
            )
        placed_at = str(placement.path)
        if placement.method is not PlacementMethod.EXISTING:
            record.placements[placed_at] = placement.method.value
            write_record(self.cache_dir, record)
        elif placed_at not in record.placements:  # unrecorded yet holding our file: only a hard link is recognised
            record.placements[placed_at] = PlacementMethod.LINK.value
            write_record(self.cache_dir, record)
        if placement.method is not PlacementMethod.EXISTING:
            log.info("placed model %s at %s (%s)", record.url, placement.path, placement.method.value)
        return placement.path

    def lookup(self, url: str) -> CachedModel | None:
        """The cached entry for `url` when present and intact; does not count as a use."""
        record = self._records.get(cache_key(url))
        return self._model(record) if record is not None and self._intact(record) else None

    def usage(self) -> dict[str, int]:
        evictable = [r for r in self._records.values() if not r.persistent]
        return {
            "entries": len(self._records),
            "size_bytes": sum(r.size_bytes for r in self._records.values()),
            "evictable_bytes": sum(r.size_bytes for r in evictable),
            "max_size_bytes": self.max_size_bytes,
            "pinned_entries": len(self._pins),
        }

    def evict_over_limit(self, protect: Iterable[str] = ()) -> list[CachedModel]:
        """Evict least-recently-used, unpinned, non-persistent entries until the evictable total fits the limit."""
        if self.max_size_bytes <= 0:
            return []
        protected = set(protect)
        evictable = [r for r in self._records.values() if not r.persistent]
        total = sum(r.size_bytes for r in evictable)
        candidates = sorted(
            (r for r in evictable if r.key not in protected and self._pins.get(r.key, 0) <= 0),
            key=lambda r: r.last_used_at,
        )
        evicted = []
        for record in candidates:
            if total <= self.max_size_bytes:
                break
            evicted.append(self._evict(record))
            total -= record.size_bytes
        if total > self.max_size_bytes:
            log.warning(
                "model cache holds %d bytes over its %d-byte limit; every remaining file is in use",
                total - self.max_size_bytes,
                self.max_size_bytes,
            )
        return evicted

    # ---- internals ----

    async def _download(self, key: str, url: str, credentials: Sequence[Credential], persistent: bool) -> CachedModel:
        shown = cache_url(url)
        work_dir = self.cache_dir / TEMP_DIR_NAME / f"{key}-{secrets.token_hex(4)}"
        started = time.monotonic()
        log.info("downloading model %s", shown)
        try:
            await asyncio.to_thread(work_dir.mkdir, parents=True, exist_ok=True)
            try:
                async with asyncio.timeout(self._download_timeout_s):
                    produced = Path(await self._downloader(url, work_dir, credentials))
            except TimeoutError:
                raise StorageError(
                    f"downloading {shown} took longer than {self._download_timeout_s:g}s", provider="cache"
                ) from None
            record = await asyncio.to_thread(self._land, key, url, produced, credentials, persistent)
        finally:
            await asyncio.to_thread(_remove_work_dir, work_dir)
        duration_s = time.monotonic() - started
        self._records[key] = record
        log.info("downloaded model %s (%d bytes) in %.2fs", shown, record.size_bytes, duration_s)
        path = self._path_of(key)
        self._emit(
            "storage.file_downloaded",
            {"url": shown, "path": str(path), "local_path": str(path), "size": record.size_bytes,
             "duration_s": round(duration_s, 3)},
        )  # fmt: skip
        self.evict_over_limit(protect={key})
        return self._model(record)

    def _land(
        self, key: str, url: str, produced: Path, credentials: Sequence[Credential], persistent: bool
    ) -> CacheRecord:
        if not produced.is_file():
            raise StorageError(f"the download of {cache_url(url)} produced no file", provider="cache")
        from_url = url_filename(url) if url_extension(url) else ""
        ext = url_extension(url) or extension_of(produced.name)
        filename = from_url or safe_filename(produced.name) or key
        if ext and not extension_of(filename):
            filename += ext
        final = self.cache_dir / f"{key}{ext}"
        if produced.parent == final.parent or produced.stat().st_dev == self.cache_dir.stat().st_dev:
            os.replace(produced, final)
        else:  # a downloader that wrote elsewhere: move it across, still landing by rename
            temp = self.cache_dir / TEMP_DIR_NAME / f"{key}.{secrets.token_hex(4)}.move"
            shutil.move(produced, temp)
            os.replace(temp, final)
        now = self._clock()
        record = CacheRecord(
            key=key,
            file=final.name,
            url=cache_url(url),
            filename=filename,
            size_bytes=final.stat().st_size,
            downloaded_at=time.time(),
            last_used_at=now,
            auth_used=bool(matching_credentials(url, credentials)) or has_secret_params(url),
            persistent=persistent,
        )
        write_record(self.cache_dir, record)
        return record

    async def _may_read(self, record: CacheRecord, url: str, credentials: Sequence[Credential]) -> bool:
        """A file that needed auth is served from the cache only to a request that can read the URL itself:
        checked with `access_check` (raises when refused); without one, http(s) URLs are checked with a one-byte
        request and other URLs are fetched again (False), which checks by doing."""
        if not record.auth_used:
            return True
        if self._access_check is not None:
            await self._access_check(url, credentials)
            return True
        if urlsplit(url).scheme.lower() in ("http", "https"):
            await self._http.check_access(url, credentials)
            return True
        return False

    def _forget(self, key: str, task: asyncio.Task[CachedModel]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so a download nobody awaits any more is not reported as lost

    def _evict(self, record: CacheRecord) -> CachedModel:
        source = self._path_of(record.key)
        removed = [
            path
            for path, method in record.placements.items()
            if remove_placement(Path(path), source, recorded_copy=method == PlacementMethod.COPY.value)
        ]
        with contextlib.suppress(FileNotFoundError):
            source.unlink()
        with contextlib.suppress(FileNotFoundError):
            meta_path(self.cache_dir, record.key).unlink()
        del self._records[record.key]
        log.info(
            "evicted model %s (%d bytes, last used %.0fs ago); removed %s",
            record.url,
            record.size_bytes,
            max(0.0, self._clock() - record.last_used_at),
            [str(source), *removed],
        )
        self._emit(
            "storage.file_deleted",
            {"url": record.url, "path": str(source), "local_path": str(source), "size": record.size_bytes,
             "placements": removed},
        )  # fmt: skip
        return self._model(record)

    def _touch(self, record: CacheRecord, *, persistent: bool) -> None:
        record.last_used_at = max(self._clock(), record.last_used_at)
        record.persistent = record.persistent or persistent
        write_record(self.cache_dir, record)

    def _intact(self, record: CacheRecord) -> bool:
        return size_is(self.cache_dir / record.file, record.size_bytes)

    def _key_of(self, item: Path | str | CachedModel) -> str | None:
        if isinstance(item, CachedModel):
            return item.key
        if isinstance(item, str) and item in self._records:
            return item
        path = Path(item)
        if path.parent == self.cache_dir:
            key = path.name.split(".", 1)[0]
            return key if key in self._records else None
        text = str(path)
        return next((r.key for r in self._records.values() if text in r.placements), None)

    def _path_of(self, key: str) -> Path:
        return self.cache_dir / self._records[key].file

    def _model(self, record: CacheRecord) -> CachedModel:
        return CachedModel(
            key=record.key,
            path=self.cache_dir / record.file,
            url=record.url,
            filename=record.filename,
            size_bytes=record.size_bytes,
            auth_used=record.auth_used,
        )

    def _emit(self, name: str, data: Mapping[str, Any]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(name, data)
        except Exception:  # a broken subscriber must not break the cache
            log.exception("model cache event callback failed for %s", name)


def _remove_work_dir(work_dir: Path) -> None:
    """Remove one download's folder. The shared temp folder above it stays: removing it when it looked empty raced
    with another download creating its own folder there (it goes at start-up and at close instead)."""
    shutil.rmtree(work_dir, ignore_errors=True)
