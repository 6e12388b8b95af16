"""Model URL identity: presigned and tokenised variants share a cache key; meaningful parameters do not."""

from __future__ import annotations

import pytest

from comfyui_api.models.records import cache_key
from comfyui_api.models.urls import (
    cache_url,
    has_secret_params,
    is_url,
    safe_filename,
    url_extension,
    url_filename,
)

S3_A = (
    "https://bucket.s3.amazonaws.com/models/sdxl.safetensors?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20250101&X-Amz-Date=20250101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=aaa"
)
S3_B = (
    "https://bucket.s3.amazonaws.com/models/sdxl.safetensors?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIA%2F20250102&X-Amz-Date=20250102T000000Z&X-Amz-Expires=600&X-Amz-Signature=bbb"
)
AZURE = "https://acct.blob.core.windows.net/c/m.safetensors?sv=2022-11-02&se=2025-01-01&sr=b&sp=r&sig=abc%3D"
GCS = "https://storage.googleapis.com/b/m.ckpt?X-Goog-Algorithm=GOOG4&X-Goog-Signature=ff&X-Goog-Expires=60"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (S3_A, "https://bucket.s3.amazonaws.com/models/sdxl.safetensors"),
        (AZURE, "https://acct.blob.core.windows.net/c/m.safetensors"),
        (GCS, "https://storage.googleapis.com/b/m.ckpt"),
        (
            "https://huggingface.co/o/r/resolve/main/m.safetensors?download=true",
            "https://huggingface.co/o/r/resolve/main/m.safetensors",
        ),
        (
            "https://civitai.com/api/download/models/1?token=SECRET&type=Model",
            "https://civitai.com/api/download/models/1?type=Model",
        ),
        ("https://user:pw@Host.Example:8443/a.pt#frag", "https://host.example:8443/a.pt"),
        ("https://h/m?b=2&a=1", "https://h/m?a=1&b=2"),
    ],
)
def test_cache_url_drops_secrets_and_keeps_meaningful_parameters(url: str, expected: str) -> None:
    assert cache_url(url) == expected


def test_presigned_variants_share_a_key_and_variants_do_not() -> None:
    assert cache_key(S3_A) == cache_key(S3_B)
    assert cache_key(S3_A) == cache_key("https://bucket.s3.amazonaws.com/models/sdxl.safetensors")
    civitai = "https://civitai.com/api/download/models/128713?type=Model&format=SafeTensor&fp="
    assert cache_key(civitai + "fp16") != cache_key(civitai + "fp32")
    assert len(cache_key(S3_A)) == 32


def test_secret_parameter_detection() -> None:
    assert has_secret_params(S3_A) and has_secret_params(AZURE)
    assert has_secret_params("https://civitai.com/x?token=1")
    assert not has_secret_params("https://huggingface.co/x/m.safetensors?download=true")
    assert not has_secret_params("https://h/m.safetensors")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://h/m.safetensors", True),
        ("s3://bucket/key.ckpt", True),
        ("hf://org/repo/file.safetensors", True),
        ("model.safetensors", False),
        ("sub/dir/model.safetensors", False),
        ("C:\\models\\x.ckpt", False),
        ("https://h/with space", False),
        (42, False),
        (["1", 0], False),
    ],
)
def test_is_url(value: object, expected: bool) -> None:
    assert is_url(value) is expected


def test_file_names_from_urls() -> None:
    assert url_filename("https://h/a/b/My%20Model.safetensors?x=1") == "My Model.safetensors"
    assert url_extension("https://h/a/My.Model.SafeTensors?x=1") == ".safetensors"
    assert url_filename("https://h/a/") == ""
    assert url_extension("https://civitai.com/api/download/models/128713") == ""
    assert safe_filename("../../etc/passwd") == "passwd"
    assert safe_filename("..\\..\\x.pt") == "x.pt"
    assert safe_filename(".hidden") == "hidden"
    assert safe_filename("a\x00b.pt") == "ab.pt"
