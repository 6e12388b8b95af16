"""File names and media types of transferred files: the extension a download deserves, a safe local name, and the
Content-Type an upload carries. Pure functions; no I/O.
"""

from __future__ import annotations

import mimetypes
import re
from email.message import Message
from pathlib import PurePosixPath
from urllib.parse import unquote, urlsplit

DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Fixed so that results do not depend on the host's /etc/mime.types.
_TYPES_BY_EXTENSION = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".avif": "image/avif",
    ".heic": "image/heic",
    ".svg": "image/svg+xml",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".webm": "video/webm",
    ".mov": "video/quicktime",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
    ".mp3": "audio/mpeg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".opus": "audio/opus",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".json": "application/json",
    ".txt": "text/plain",
    ".glb": "model/gltf-binary",
    ".gltf": "model/gltf+json",
    ".safetensors": "application/octet-stream",
    ".zip": "application/zip",
    ".latent": "application/octet-stream",
}
_EXTENSIONS_BY_TYPE = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "audio/mpeg": ".mp3",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/opus": ".opus",
    "audio/mp4": ".m4a",
    "application/json": ".json",
    "text/plain": ".txt",
    "application/zip": ".zip",
}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=@-]+")
_MAX_NAME_CHARS = 150


def content_type_for(filename: str) -> str:
    """The media type an upload of `filename` should carry."""
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix in _TYPES_BY_EXTENSION:
        return _TYPES_BY_EXTENSION[suffix]
    guessed, _ = mimetypes.guess_type(f"x{suffix}", strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def extension_for(content_type: str | None) -> str | None:
    """`.png` for `image/png; charset=...`; None when the type says nothing useful."""
    if not content_type:
        return None
    bare = content_type.split(";", 1)[0].strip().lower()
    if bare in _EXTENSIONS_BY_TYPE:
        return _EXTENSIONS_BY_TYPE[bare]
    if bare in ("", DEFAULT_CONTENT_TYPE):
        return None
    return mimetypes.guess_extension(bare, strict=False)


def name_from_content_disposition(header: str | None) -> str | None:
    """The file name a Content-Disposition header proposes (RFC 6266, including `filename*=UTF-8''...`)."""
    if not header:
        return None
    message = Message()
    message["content-disposition"] = header
    name = message.get_filename()
    return name or None


def name_from_url(url: str) -> str | None:
    """The last path segment of a URL (percent-decoded), if it has one."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return None
    segment = unquote(path.rstrip("/").rsplit("/", 1)[-1]) if path else ""
    return segment or None


_DRIVE = re.compile(r"^[A-Za-z]:")


def path_escape(value: str) -> str | None:
    """Why a name meant to stay inside a folder would not: "a NUL character", "an absolute path" (`/x`, `C:...`) or
    "a '..' segment" (after `\\` becomes `/`); None when it stays inside."""
    if "\x00" in value:
        return "a NUL character"
    normalised = value.replace("\\", "/")
    if normalised.startswith("/") or _DRIVE.match(normalised):
        return "an absolute path"
    if ".." in normalised.split("/"):
        return "a '..' segment"
    return None


def safe_filename(name: str | None, *, fallback: str = "download") -> str:
    """A name safe to create in a directory: no separators, no leading dot, bounded length, extension kept."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip("._") or fallback
    if len(base) > _MAX_NAME_CHARS:
        suffix = PurePosixPath(base).suffix[:16]
        base = base[: _MAX_NAME_CHARS - len(suffix)] + suffix
    return base


def download_filename(url: str, *, content_disposition: str | None = None, content_type: str | None = None) -> str:
    """The local name for a download: Content-Disposition, else the URL's last segment; an extension from the
    Content-Type is added when the name has none."""
    name = safe_filename(name_from_content_disposition(content_disposition) or name_from_url(url))
    if not PurePosixPath(name).suffix:
        extension = extension_for(content_type)
        if extension:
            name += extension
    return name
