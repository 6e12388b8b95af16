"""Per-request credentials: validation naming fields, URL matching, HTTP auth material, redaction."""

from __future__ import annotations

from typing import Any

import pytest

from comfyui_api.errors import InvalidRequest
from comfyui_api.storage.base import Credential
from comfyui_api.storage.credentials import (
    S3Credentials,
    http_auth_for,
    matching_credential,
    pattern_matches,
    redact_url,
    s3_credentials_for,
    scrub,
    secrets_of,
    split_userinfo,
    strip_secrets,
    validate_credentials,
)


@pytest.mark.parametrize(
    ("pattern", "url", "expected"),
    [
        ("https://example.com/models/", "https://example.com/models/a.safetensors", True),
        ("https://example.com/models/", "https://example.com/other/a.safetensors", False),
        ("https://example.com/*", "https://example.com/a.png", True),
        ("https://example.com/*", "https://example.com/dir/a.png", False),
        ("https://example.com/**", "https://example.com/dir/a.png", True),
        ("https://*.s3.amazonaws.com/**", "https://bucket.s3.amazonaws.com/k/x.bin", True),
        ("https://*.s3.amazonaws.com/**", "https://evil.com/bucket.s3.amazonaws.com/x", False),
        ("s3://bucket-?/**", "s3://bucket-1/a/b", True),
        ("s3://bucket-?/**", "s3://bucket-12/a/b", False),
        ("https://host.test/a.b", "https://host.test/aXb", False),  # dots are literal
    ],
)
def test_pattern_matches(pattern: str, url: str, expected: bool) -> None:
    assert pattern_matches(pattern, url) is expected


def test_first_matching_credential_wins_and_type_filter_applies() -> None:
    s3 = Credential("s3://b/**", {"type": "s3", "access_key_id": "k", "secret_access_key": "s"})
    broad = Credential("s3://", {"type": "bearer", "token": "t1"})
    narrow = Credential("s3://b/x", {"type": "bearer", "token": "t2"})
    creds = [broad, narrow, s3]

    assert matching_credential("s3://b/x.png", creds) is broad
    assert matching_credential("s3://b/x.png", creds, auth_types=("s3",)) is s3
    assert matching_credential("https://other/x", creds) is None


@pytest.mark.parametrize(
    ("auth", "field"),
    [
        ({"type": "bearer"}, "credentials[0].auth.token"),
        ({"type": "bearer", "token": ""}, "credentials[0].auth.token"),
        ({"type": "basic", "username": "user-name-1"}, "credentials[0].auth.password"),
        ({"type": "header", "value": "header-secret-1"}, "credentials[0].auth.name"),
        ({"type": "header", "name": "Bad Header", "value": "header-secret-2"}, "credentials[0].auth.name"),
        ({"type": "query", "name": "sig-name"}, "credentials[0].auth.value"),
        ({"type": "s3", "access_key_id": "key-id-1"}, "credentials[0].auth.secret_access_key"),
        (
            {"type": "s3", "access_key_id": "key-id-2", "secret_access_key": "s3-secret-2", "region": 5},
            "credentials[0].auth.region",
        ),
        ({"type": "oauth"}, "credentials[0].auth.type"),
    ],
)
def test_invalid_credentials_name_the_field_not_the_value(auth: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_credentials([Credential("https://x/", auth)])
    assert caught.value.field == field
    for name, value in auth.items():
        if name != "type" and isinstance(value, str) and value:
            assert value not in caught.value.message


def test_empty_pattern_is_rejected() -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_credentials([Credential("  ", {"type": "bearer", "token": "t"})])
    assert caught.value.field == "credentials[0].url_pattern"


def test_salad_field_spellings_are_accepted() -> None:
    header = Credential("https://x/", {"type": "header", "header_name": "X-Key", "header_value": "v1"})
    query = Credential("https://x/", {"type": "query", "query_param": "sig", "query_value": "v2"})
    s3 = Credential("s3://b/", {"type": "s3", "access_key_id": "k", "secret_access_key": "s", "endpoint": "http://m"})

    validate_credentials([header, query, s3])

    assert http_auth_for(header).headers == (("X-Key", "v1"),)
    assert http_auth_for(query).query == (("sig", "v2"),)
    found = s3_credentials_for("s3://b/key", [s3])
    assert found == S3Credentials("k", "s", None, None, "http://m")


def test_http_auth_for_each_type() -> None:
    assert http_auth_for(Credential("x", {"type": "bearer", "token": "abc"})).headers == (
        ("Authorization", "Bearer abc"),
    )
    assert http_auth_for(Credential("x", {"type": "basic", "username": "ann", "password": "pw"})).headers == (
        ("Authorization", "Basic YW5uOnB3"),
    )
    assert http_auth_for(Credential("x", {"type": "s3", "access_key_id": "k", "secret_access_key": "s"})).headers == ()


def test_reprs_hide_secrets() -> None:
    credential = Credential("s3://b/", {"type": "s3", "access_key_id": "AKID", "secret_access_key": "very-secret"})
    s3 = s3_credentials_for("s3://b/k", [credential])
    auth = http_auth_for(Credential("x", {"type": "bearer", "token": "tok-123456"}))

    assert "very-secret" not in repr(credential)
    assert "very-secret" not in repr(s3)
    assert "tok-123456" not in repr(auth)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host.test/a.png?sig=abc&sv=1", "https://***@host.test/a.png?sig=***&sv=***"),
        ("https://host.test/a.png", "https://host.test/a.png"),
        ("s3://bucket/key.png", "s3://bucket/key.png"),
        ("https://host.test/a?token", "https://host.test/a?token=***"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_strip_secrets_and_split_userinfo() -> None:
    assert strip_secrets("https://u:p@h.test:8443/x/y.png?sig=1#f") == "https://h.test:8443/x/y.png"
    bare, credential = split_userinfo("http://ann:p%40ss@127.0.0.1:9000/f.png")
    assert bare == "http://127.0.0.1:9000/f.png"
    assert credential is not None and credential.auth == {"type": "basic", "username": "ann", "password": "p@ss"}
    assert split_userinfo("http://127.0.0.1/f.png") == ("http://127.0.0.1/f.png", None)


def test_scrub_removes_every_known_secret() -> None:
    creds = [
        Credential("x", {"type": "bearer", "token": "tok-abcdef"}),
        Credential("y", {"type": "basic", "username": "ann", "password": "pa55word"}),
        Credential("z", {"type": "query", "name": "key", "value": "q/v+1=="}),
    ]
    secrets = secrets_of(creds, urls=["https://u:urlpass@h/x?sig=sig-value-1"], extra=["env-secret", None])
    text = (
        "failed with tok-abcdef and pa55word, Basic YW5uOnBhNTV3b3Jk, q%2Fv%2B1%3D%3D, urlpass, sig-value-1, env-secret"
    )

    cleaned = scrub(text, secrets)

    for secret in (
        "tok-abcdef",
        "pa55word",
        "YW5uOnBhNTV3b3Jk",
        "q%2Fv%2B1%3D%3D",
        "urlpass",
        "sig-value-1",
        "env-secret",
    ):
        assert secret not in cleaned
    assert cleaned.startswith("failed with *** and ***")
