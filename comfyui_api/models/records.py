"""The model cache's on-disk bookkeeping: cache keys, the `<key>.meta` JSON records beside each cached file, and
the start-up scan that drops broken entries and temp leftovers.

Blocking file work (call it from a thread when it may be slow). It never downloads, places or evicts anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from comfyui_api.models.urls import cache_url

log = logging.getLogger(__name__)

KEY_CHARS = 32
TEMP_DIR_NAME = ".tmp"
META_SUFFIX = ".meta"
_HEX = frozenset("0123456789abcdef")


def cache_key(url: str) -> str:
    """The cache identity of a URL: a hash of `cache_url(url)` (signatures and tokens stripped)."""
    return hashlib.sha256(cache_url(url).encode("utf-8")).hexdigest()[:KEY_CHARS]


@dataclass
class CacheRecord:
    """What `<key>.meta` holds. `last_used_at` is our own access record, the LRU order (never the file's atime)."""

    key: str
    file: str  # `<key><ext>`, inside the cache dir
    url: str  # cache_url(): no signature, token or user-info
    filename: str  # the name the file came with, used when placing it in a model folder
    size_bytes: int
    downloaded_at: float  # epoch seconds
    last_used_at: float
    auth_used: bool  # credentials matched the URL, or it was a presigned/tokenised link
    persistent: bool = False  # placed by the manifest: never evicted, not counted against the limit
    placements: dict[str, str] = field(default_factory=dict)  # path in a model folder -> "link" or "copy"


def meta_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{key}{META_SUFFIX}"


def write_record(cache_dir: Path, record: CacheRecord) -> None:
    """Replace `<key>.meta` atomically."""
    meta = meta_path(cache_dir, record.key)
    temp = meta.with_name(f"{meta.name}.{secrets.token_hex(4)}.tmp")
    temp.write_text(json.dumps({"version": 1, **asdict(record)}, indent=1), encoding="utf-8")
    os.replace(temp, meta)


def read_record(meta: Path) -> CacheRecord | None:
    """The record in a `.meta` file, or None when it is unreadable or inconsistent."""
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        data.pop("version", None)
        record = CacheRecord(**data)
    except (OSError, ValueError, TypeError):
        return None
    if record.key != meta.name[: -len(META_SUFFIX)] or Path(record.file).name != record.file:
        return None
    if not isinstance(record.placements, dict):
        return None
    return record


def scan_cache_dir(cache_dir: Path) -> dict[str, CacheRecord]:
    """Create the dir, remove temp leftovers, load every intact record; drop records whose file is missing or has
    another size, and cached files that have no record."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(cache_dir / TEMP_DIR_NAME, ignore_errors=True)
    records: dict[str, CacheRecord] = {}
    for meta in cache_dir.glob(f"*{META_SUFFIX}"):
        record = read_record(meta)
        data_file = cache_dir / record.file if record is not None else None
        if record is None or data_file is None or not size_is(data_file, record.size_bytes):
            log.warning("dropping broken model cache entry %s", meta.name)
            meta.unlink(missing_ok=True)
            if data_file is not None:
                data_file.unlink(missing_ok=True)
            continue
        records[record.key] = record
    known = {record.file for record in records.values()}
    for path in cache_dir.iterdir():
        if is_cache_file_name(path.name) and path.name not in known and path.is_file():
            log.warning("removing model cache file without a record: %s", path.name)
            path.unlink(missing_ok=True)
    return records


def is_cache_file_name(name: str) -> bool:
    """`<key>` or `<key>.<ext>` (not a `.meta`): the only names this cache writes and may delete."""
    stem = name.split(".", 1)[0]
    return len(stem) == KEY_CHARS and set(stem) <= _HEX and not name.endswith(META_SUFFIX)


def size_is(path: Path, size_bytes: int) -> bool:
    try:
        return path.stat().st_size == size_bytes
    except OSError:
        return False
