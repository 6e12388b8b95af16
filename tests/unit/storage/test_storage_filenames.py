"""Local names and media types of transferred files."""

from __future__ import annotations

import pytest

from comfyui_api.storage.filenames import (
    content_type_for,
    download_filename,
    extension_for,
    name_from_content_disposition,
    safe_filename,
)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("a.webp", "image/webp"),
        ("clip.mp4", "video/mp4"),
        ("clip.webm", "video/webm"),
        ("voice.wav", "audio/wav"),
        ("voice.flac", "audio/flac"),
        ("model.safetensors", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_for(filename: str, content_type: str) -> None:
    assert content_type_for(filename) == content_type


@pytest.mark.parametrize(
    ("content_type", "extension"),
    [
        ("image/png", ".png"),
        ("image/jpeg; charset=binary", ".jpg"),
        ("audio/x-wav", ".wav"),
        ("application/octet-stream", None),
        (None, None),
        ("", None),
    ],
)
def test_extension_for(content_type: str | None, extension: str | None) -> None:
    assert extension_for(content_type) == extension


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="a b.png"', "a b.png"),
        ("attachment; filename=plain.mp4", "plain.mp4"),
        ("attachment; filename*=UTF-8''caf%C3%A9.png", "café.png"),
        ("inline", None),
        (None, None),
    ],
)
def test_name_from_content_disposition(header: str | None, name: str | None) -> None:
    assert name_from_content_disposition(header) == name


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\windows\\evil.png", "evil.png"),
        (".hidden.png", "hidden.png"),
        ("a b?c.png", "a_b_c.png"),
        ("", "download"),
        (None, "download"),
        ("..", "download"),
    ],
)
def test_safe_filename(raw: str | None, safe: str) -> None:
    assert safe_filename(raw) == safe


def test_long_names_keep_their_extension() -> None:
    name = safe_filename("x" * 400 + ".safetensors")
    assert len(name) <= 150 and name.endswith(".safetensors")


@pytest.mark.parametrize(
    ("url", "disposition", "content_type", "expected"),
    [
        ("https://h/files/photo.png?sig=1", None, "image/jpeg", "photo.png"),
        ("https://h/files/blob", None, "image/webp", "blob.webp"),
        ("https://h/files/blob", 'attachment; filename="out.mp4"', "image/webp", "out.mp4"),
        ("https://h/", None, "audio/mpeg", "download.mp3"),
        ("https://h/files/a%20b.png", None, None, "a_b.png"),
    ],
)
def test_download_filename(url: str, disposition: str | None, content_type: str | None, expected: str) -> None:
    assert download_filename(url, content_disposition=disposition, content_type=content_type) == expected
