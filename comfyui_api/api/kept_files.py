"""A kept output file as an HTTP answer (`/jobs/{id}/outputs/{i}`, `/comfyui/view`, `/api/v1/images/download`).

A small file (most images a job makes) is read in one go on the event loop: a streamed file response costs four
trips to a worker thread (stat, open, read, close), which is most of what serving a 100 KB PNG costs. Larger files
stream from disk in chunks, so memory never holds more than a chunk of them.
"""

from __future__ import annotations

import stat
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Response
from litestar.response import File

INLINE_MAX_BYTES = 512 * 1024


def kept_file(path: Path, *, filename: str, media_type: str) -> Response[Any] | None:
    """The file's bytes with its content type, shown inline under `filename`; None when it is gone (released between the
    caller's check and now) or is not a regular file."""
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):
            return None
        if found.st_size > INLINE_MAX_BYTES:
            return File(
                path,
                filename=filename,
                media_type=media_type,
                content_disposition_type="inline",
                stat_result=found,
            )
        content = path.read_bytes()
    except FileNotFoundError:
        return None
    headers = {
        "content-disposition": _inline_disposition(filename),
        "last-modified": formatdate(found.st_mtime, usegmt=True),
    }
    return Response(content, media_type=media_type, headers=headers)


def _inline_disposition(filename: str) -> str:
    quoted = quote(filename)
    if quoted == filename:
        return f'inline; filename="{filename}"'
    return f"inline; filename*=utf-8''{quoted}"
