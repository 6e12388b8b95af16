"""Media sniffing from magic bytes, on real files made by Pillow and PyAV."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.jobs import media
from tests.unit.jobs.samples import audio_bytes, image_bytes, video_bytes

CASES = [
    ("png", lambda: image_bytes("PNG"), "image/png"),
    ("jpg", lambda: image_bytes("JPEG"), "image/jpeg"),
    ("webp", lambda: image_bytes("WEBP"), "image/webp"),
    ("gif", lambda: image_bytes("GIF"), "image/gif"),
    ("bmp", lambda: image_bytes("BMP"), "image/bmp"),
    ("tiff", lambda: image_bytes("TIFF"), "image/tiff"),
    ("mp4", lambda: video_bytes("mp4", "mpeg4"), "video/mp4"),
    ("mov", lambda: video_bytes("mov", "mpeg4"), "video/quicktime"),
    ("webm", lambda: video_bytes("webm", "libvpx"), "video/webm"),
    ("mkv", lambda: video_bytes("matroska", "mpeg4"), "video/x-matroska"),
    ("wav", lambda: audio_bytes("wav", "pcm_s16le"), "audio/wav"),
    ("flac", lambda: audio_bytes("flac", "flac"), "audio/flac"),
    ("mp3", lambda: audio_bytes("mp3", "libmp3lame"), "audio/mpeg"),
    ("opus", lambda: audio_bytes("ogg", "libopus"), "audio/ogg"),
    ("aac", lambda: audio_bytes("adts", "aac"), "audio/aac"),
]


@pytest.mark.parametrize(("extension", "make", "content_type"), CASES, ids=[case[0] for case in CASES])
def test_sniff_real_files(extension: str, make, content_type: str) -> None:
    found = media.sniff(make()[: media.SNIFF_BYTES])
    assert found is not None
    assert (found.extension, found.content_type) == (extension, content_type)


def test_mp3_frame_without_id3_tag() -> None:
    found = media.sniff(b"\xff\xfb\x90\x64" + bytes(60))
    assert found == media.MP3


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"hello world, plain text",
        b"%PDF-1.7\n",
        b"PK\x03\x04zip",
        b"BMx",
        b"RIFF\x00\x00\x00\x00ABCD",
        b"\xff\x00",
    ],
)
def test_unknown_or_truncated_heads_are_not_media(head: bytes) -> None:
    assert media.sniff(head) is None


def test_content_type_prefers_magic_over_extension(tmp_path: Path) -> None:
    lying = tmp_path / "picture.jpg"
    lying.write_bytes(image_bytes("PNG"))
    assert media.content_type_for(lying) == "image/png"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("x.latent", "application/octet-stream"), ("notes.txt", "text/plain"), ("noext", "application/octet-stream")],
)
def test_content_type_falls_back_to_extension(tmp_path: Path, name: str, content_type: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not media at all")
    assert media.content_type_for(path) == content_type
