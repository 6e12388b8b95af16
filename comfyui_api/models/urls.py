"""Model URL text: telling a URL from a file name, the cache identity of a URL, and the file name it implies.

Pure string work. The identity (`cache_url`) drops what makes presigned or tokenised URLs differ between requests
(signatures, expiry, credentials, user-info, fragment) and keeps every other query parameter, so two presigned
links to one object share a cache entry while `?format=fp16` and `?format=fp32` do not. It is also the only form of
a URL that may be logged or stored.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$")
# Query parameters that sign, expire or authenticate a link rather than choose the object.
_SECRET_PARAM_PREFIXES = ("x-amz-", "x-goog-", "x-ms-", "x-oss-")
_SECRET_PARAMS = frozenset(
    {
        # AWS S3 (v2), CloudFront, GCS
        "awsaccesskeyid", "signature", "expires", "policy", "key-pair-id", "googleaccessid",
        # Azure SAS
        "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "si", "sdd", "ses",
        "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
        "rscc", "rscd", "rsce", "rscl", "rsct",
        # tokens of common model hosts (Civitai, Hugging Face mirrors)
        "token", "access_token", "api_key", "apikey", "auth",
    }
)  # fmt: skip
_COSMETIC_PARAMS = frozenset({"download"})  # Hugging Face's `?download=true` changes nothing about the bytes


def is_url(value: object) -> bool:
    """A `scheme://...` string (http, https, s3, hf, ...). ComfyUI file names never look like this."""
    return isinstance(value, str) and bool(_URL.match(value))


def cache_url(url: str) -> str:
    """The URL without credentials, signature parameters or fragment; remaining query parameters are sorted."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    kept = sorted(
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not _is_secret_param(name) and name.lower() not in _COSMETIC_PARAMS
    )
    return urlunsplit((parts.scheme.lower(), host.lower(), parts.path, urlencode(kept), ""))


def url_filename(url: str) -> str:
    """The last path segment of a URL, decoded; "" when the path ends in '/' or is empty."""
    path = unquote(urlsplit(url).path)
    name = PurePosixPath(path).name if not path.endswith("/") else ""
    return safe_filename(name)


def url_extension(url: str) -> str:
    """`.safetensors` for `.../model.safetensors?x=1`; "" when the URL's file name has no extension."""
    return extension_of(url_filename(url))


def extension_of(name: str) -> str:
    suffix = PurePosixPath(name).suffix
    return suffix.lower() if suffix and len(suffix) <= 16 and suffix[1:].isalnum() else ""


def safe_filename(name: str) -> str:
    """A single path component: no separators, no control characters, no leading dots; "" when nothing is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name.strip().lstrip(".").strip()


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or lowered.startswith(_SECRET_PARAM_PREFIXES)


def has_secret_params(url: str) -> bool:
    """True when the query carries a signature, expiry or token (a presigned or tokenised link)."""
    return any(_is_secret_param(name) for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True))
