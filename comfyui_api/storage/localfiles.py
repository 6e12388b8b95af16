"""Local ends of transfers: a download written under a reserved, unique name with a byte limit (removed on any
failure), and an upload's file read in bounded chunks off the event loop. No network, no providers.
"""

from __future__ import annotations

import asyncio
import io
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from comfyui_api.errors import InputStagingError
from comfyui_api.storage.filenames import safe_filename

CHUNK_BYTES = 1024 * 1024


def reserve_path(dest_dir: Path, filename: str) -> Path:
    """Create an empty file named like `filename` in `dest_dir` (adding `-1`, `-2`... when taken) and return it.
    Creating it exclusively makes two concurrent downloads of the same name safe."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = safe_filename(filename)
    stem, dot, suffix = name.partition(".")
    for attempt in range(10_000):
        candidate = name if attempt == 0 else f"{stem}-{attempt}{dot}{suffix}"
        path = dest_dir / candidate
        try:
            with open(path, "xb"):
                return path
        except FileExistsError:
            continue
    raise InputStagingError(f"could not find a free name for {name!r} in the input directory")


def check_size(size_bytes: int | None, max_bytes: int | None, what: str) -> None:
    """Raise InputStagingError when a declared size is over the limit."""
    if size_bytes is not None and max_bytes is not None and size_bytes > max_bytes:
        raise InputStagingError(f"{what} is {size_bytes} bytes, over the limit of {max_bytes} bytes")


class IncomingFile:
    """`async with IncomingFile(dest_dir, max_bytes, what) as sink: sink.name(...); await sink.write(chunk)`.

    Bytes go to a hidden part file; on success it is renamed to a reserved unique name in `dest_dir` and `path` is
    set. On any failure (including the byte limit) nothing is left behind.
    """

    def __init__(self, dest_dir: Path, *, max_bytes: int | None, what: str):
        self._dest_dir = dest_dir
        self._max_bytes = max_bytes
        self._what = what
        self._filename = "download"
        self._part = dest_dir / f".part-{uuid.uuid4().hex}"
        self._handle: BinaryIO | None = None
        self.size_bytes = 0
        self.path: Path | None = None

    def name(self, filename: str) -> None:
        self._filename = filename

    async def __aenter__(self) -> IncomingFile:
        await asyncio.to_thread(self._dest_dir.mkdir, parents=True, exist_ok=True)
        self._handle = await asyncio.to_thread(open, self._part, "wb")
        return self

    async def write(self, chunk: bytes) -> None:
        assert self._handle is not None
        self.size_bytes += len(chunk)
        if self._max_bytes is not None and self.size_bytes > self._max_bytes:
            raise InputStagingError(f"{self._what} is larger than the limit of {self._max_bytes} bytes")
        self._handle.write(chunk)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._handle is not None
        self._handle.close()
        if exc_type is not None:
            self._part.unlink(missing_ok=True)
            return
        try:
            target = reserve_path(self._dest_dir, self._filename)
            os.replace(self._part, target)
        except BaseException:
            self._part.unlink(missing_ok=True)
            raise
        self.path = target


async def file_size(path: Path) -> int:
    return (await asyncio.to_thread(path.stat)).st_size


async def read_chunks(path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
    """The file's bytes in chunks, each read in a worker thread; at most one chunk is held at a time."""
    handle = await asyncio.to_thread(open, path, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_bytes):
            yield chunk
    finally:
        handle.close()


class FileSlice(io.RawIOBase):
    """A read-only, seekable view of `size_bytes` bytes of a file from `offset` (an S3 part, say), read lazily in
    small pieces by whoever sends it, so a part is never held in memory whole. `len()` is what is left to read."""

    def __init__(self, path: Path, offset: int, size_bytes: int):
        super().__init__()
        self._handle = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._offset = offset
        self._size_bytes = size_bytes
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._size_bytes - self._position

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size_bytes}[whence]
        self._position = max(0, min(self._size_bytes, base + offset))
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        left = self._size_bytes - self._position
        wanted = left if size is None or size < 0 else min(size, left)
        if wanted <= 0:
            return b""
        data = os.pread(self._handle.fileno(), wanted, self._offset + self._position)
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()
