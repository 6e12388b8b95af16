"""Local ends of transfers: unique reserved names, byte limits, cleanup, chunked reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comfyui_api.errors import InputStagingError
from comfyui_api.storage.localfiles import FileSlice, IncomingFile, read_chunks, reserve_path


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_reserve_path_never_reuses_a_name(tmp_path: Path) -> None:
    paths = [reserve_path(tmp_path, "image.png") for _ in range(3)]

    assert [p.name for p in paths] == ["image.png", "image-1.png", "image-2.png"]
    assert all(p.exists() for p in paths)


def test_reserve_path_sanitises(tmp_path: Path) -> None:
    assert reserve_path(tmp_path, "../../escape.png").parent == tmp_path


async def test_incoming_file_lands_under_its_name(tmp_path: Path) -> None:
    async with IncomingFile(tmp_path, max_bytes=10, what="x") as sink:
        sink.name("data.bin")
        await sink.write(b"12345")
        await sink.write(b"678")

    assert sink.path == tmp_path / "data.bin"
    assert sink.path.read_bytes() == b"12345678"
    assert names(tmp_path) == ["data.bin"]


async def test_incoming_file_over_limit_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputStagingError, match="larger than the limit of 4 bytes"):
        async with IncomingFile(tmp_path, max_bytes=4, what="x") as sink:
            sink.name("data.bin")
            await sink.write(b"12345")

    assert names(tmp_path) == []


async def test_incoming_file_cancelled_leaves_nothing(tmp_path: Path) -> None:
    started = asyncio.Event()

    async def slow_download() -> None:
        async with IncomingFile(tmp_path, max_bytes=None, what="x") as sink:
            await sink.write(b"partial")
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(slow_download())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert names(tmp_path) == []


async def test_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 10)

    chunks = [chunk async for chunk in read_chunks(path, chunk_bytes=1000)]

    assert [len(c) for c in chunks] == [1000, 1000, 560]
    assert b"".join(chunks) == path.read_bytes()


def test_file_slice_reads_only_its_range_and_rewinds(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 10)

    with FileSlice(path, 250, 10) as part:
        assert len(part) == 10
        assert part.read(4) == bytes([250, 251, 252, 253])
        assert len(part) == 6 and part.tell() == 4
        assert part.read() == bytes([254, 255, 0, 1, 2, 3])
        assert part.read(5) == b""
        part.seek(0)
        buffer = bytearray(16)
        assert part.readinto(buffer) == 10 and bytes(buffer[:10]) == bytes([250, 251, 252, 253, 254, 255, 0, 1, 2, 3])
        assert part.seek(-3, 2) == 7 and part.read() == bytes([1, 2, 3])
    assert part.closed
