"""Media types: what a file really is, from its first bytes (magic numbers), with the extension as a fallback.

Pure functions on bytes and names; no I/O beyond reading a file's head in `sniff_file`.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path

SNIFF_BYTES = 64  # enough for every signature below (the EBML doctype is searched in this window)


@dataclass(frozen=True)
class MediaType:
    content_type: str
    extension: str  # without the dot


PNG = MediaType("image/png", "png")
JPEG = MediaType("image/jpeg", "jpg")
GIF = MediaType("image/gif", "gif")
WEBP = MediaType("image/webp", "webp")
BMP = MediaType("image/bmp", "bmp")
TIFF = MediaType("image/tiff", "tiff")
AVIF = MediaType("image/avif", "avif")
HEIC = MediaType("image/heic", "heic")
MP4 = MediaType("video/mp4", "mp4")
MOV = MediaType("video/quicktime", "mov")
M4A = MediaType("audio/mp4", "m4a")
WEBM = MediaType("video/webm", "webm")
MKV = MediaType("video/x-matroska", "mkv")
AVI = MediaType("video/x-msvideo", "avi")
WAV = MediaType("audio/wav", "wav")
FLAC = MediaType("audio/flac", "flac")
MP3 = MediaType("audio/mpeg", "mp3")
AAC = MediaType("audio/aac", "aac")
OGG = MediaType("audio/ogg", "ogg")
OPUS = MediaType("audio/ogg", "opus")
OCTET_STREAM = "application/octet-stream"

_ISO_BRANDS = {
    b"qt  ": MOV,
    b"M4A ": M4A,
    b"M4B ": M4A,
    b"avif": AVIF,
    b"avis": AVIF,
    b"heic": HEIC,
    b"heix": HEIC,
    b"mif1": HEIC,
    b"msf1": HEIC,
}
_EXTRA_CONTENT_TYPES = {
    ".webp": "image/webp",
    ".flac": "audio/flac",
    ".opus": "audio/ogg",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".latent": OCTET_STREAM,
    ".safetensors": OCTET_STREAM,
}


def _riff(head: bytes) -> MediaType | None:
    form = head[8:12]
    return {b"WEBP": WEBP, b"WAVE": WAV, b"AVI ": AVI}.get(form)


def _iso_media(head: bytes) -> MediaType:
    return _ISO_BRANDS.get(head[8:12], MP4)


def _ebml(head: bytes) -> MediaType:
    return WEBM if b"webm" in head[:SNIFF_BYTES] else MKV


def _ogg(head: bytes) -> MediaType:
    return OPUS if b"OpusHead" in head[:SNIFF_BYTES] else OGG


def _mpeg_audio(head: bytes) -> MediaType | None:
    if len(head) < 2 or head[0] != 0xFF:
        return None
    second = head[1]
    if second & 0xF6 == 0xF0:  # ADTS: sync 0xFFF, layer bits 00
        return AAC
    if second & 0xE0 == 0xE0 and (second >> 1) & 0x03 != 0:  # MPEG audio frame sync with a valid layer
        return MP3
    return None


def sniff(head: bytes) -> MediaType | None:
    """The media type whose signature starts `head`, or None when no known signature matches."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head.startswith(b"RIFF") and len(head) >= 12:
        return _riff(head)
    if head.startswith(b"BM") and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":  # reserved bytes are zero
        return BMP
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return TIFF
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(head)
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"OggS"):
        return _ogg(head)
    if head.startswith(b"ID3"):
        return MP3
    return _mpeg_audio(head)


def sniff_file(path: Path) -> MediaType | None:
    with path.open("rb") as handle:
        return sniff(handle.read(SNIFF_BYTES))


def content_type_for(path: Path) -> str:
    """Content type of a local file: its magic bytes first, then its extension, else application/octet-stream."""
    found = sniff_file(path)
    if found is not None:
        return found.content_type
    suffix = path.suffix.lower()
    if suffix in _EXTRA_CONTENT_TYPES:
        return _EXTRA_CONTENT_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or OCTET_STREAM
