"""api/kept_files.py: a kept output file served inline (small: read at once; large: streamed), its headers, and a
file that is gone or not a regular file giving None (the caller's 404)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, Response, get
from litestar.exceptions import NotFoundException
from litestar.response import File
from litestar.testing import AsyncTestClient

from comfyui_api.api.kept_files import INLINE_MAX_BYTES, kept_file


def _app(path: Path, filename: str) -> Litestar:
    @get("/file", sync_to_thread=False)
    def serve() -> Response[Any]:
        answer = kept_file(path, filename=filename, media_type="image/png")
        if answer is None:
            raise NotFoundException("gone")
        return answer

    return Litestar([serve])


@pytest.mark.parametrize("size", [0, 1000, INLINE_MAX_BYTES, INLINE_MAX_BYTES + 1, 3 * INLINE_MAX_BYTES + 7])
async def test_the_bytes_and_headers_are_the_same_read_at_once_or_streamed(tmp_path: Path, size: int) -> None:
    path = tmp_path / "out.png"
    content = bytes(i % 251 for i in range(size))
    path.write_bytes(content)
    streamed = isinstance(kept_file(path, filename="out.png", media_type="image/png"), File)
    assert streamed is (size > INLINE_MAX_BYTES)
    async with AsyncTestClient(_app(path, "out.png")) as client:
        answer = await client.get("/file")
    assert answer.status_code == 200
    assert answer.content == content
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["content-length"] == str(size)
    assert answer.headers["content-disposition"] == 'inline; filename="out.png"'
    assert answer.headers["last-modified"].endswith(" GMT")


async def test_a_name_outside_ascii_is_given_in_the_encoded_form(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"png")
    async with AsyncTestClient(_app(path, "kätzchen 1.png")) as client:
        answer = await client.get("/file")
    assert answer.headers["content-disposition"] == "inline; filename*=utf-8''k%C3%A4tzchen%201.png"


def test_a_file_that_is_gone_or_not_a_file_gives_none(tmp_path: Path) -> None:
    assert kept_file(tmp_path / "missing.png", filename="m.png", media_type="image/png") is None
    assert kept_file(tmp_path, filename="dir.png", media_type="image/png") is None
