"""The pure parts of webhook retries: Retry-After parsing, full-jitter backoff, URL redaction, v2 bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from comfyui_api.delivery.sender import RetryPolicy, parse_retry_after, redact_url
from comfyui_api.delivery.webhooks import failed_payload, iso_timestamp, v2_body
from comfyui_api.errors import ExecutionFailed

NOW = 1_700_000_000.0


def _http_date(epoch_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch_s, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 0 ", 0.0),
        ("120", 120.0),
        (_http_date(NOW + 30), 30.0),
        (_http_date(NOW - 30), 0.0),  # a date in the past means "now"
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("Wed, 99 Foo 2024 25:61:00 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now_s=NOW) == expected


@pytest.mark.parametrize(
    ("retry_number", "draw", "expected_s"),
    [
        (1, 1.0, 1.0),
        (2, 1.0, 2.0),
        (3, 1.0, 4.0),
        (3, 0.5, 2.0),
        (3, 0.0, 0.0),
        (20, 1.0, 60.0),  # capped at backoff_max_s
        (20, 0.25, 15.0),
    ],
)
def test_backoff_is_full_jitter_under_a_doubling_ceiling(retry_number: int, draw: float, expected_s: float) -> None:
    assert RetryPolicy(backoff_base_s=1.0, backoff_max_s=60.0).backoff_s(retry_number, draw) == expected_s


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@hooks.example.com:8443/in?token=abc", "https://hooks.example.com:8443/in"),
        ("http://127.0.0.1/hook", "http://127.0.0.1/hook"),
        ("http://[::1]:9000/h?sig=1#frag", "http://[::1]:9000/h"),
    ],
)
def test_redacted_url_keeps_no_credentials_or_query(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_v2_body_is_salads_flat_shape() -> None:
    payload = {"id": "job-1", "prompt": {"1": {}}, "images": ["aGk="], "type": "ignored", "timestamp": "ignored"}
    body = v2_body("prompt.complete", payload, epoch_s=NOW + 0.1234)
    assert list(body)[:2] == ["type", "timestamp"]
    assert body == {
        "type": "prompt.complete",
        "timestamp": "2023-11-14T22:13:20.123Z",
        "id": "job-1",
        "prompt": {"1": {}},
        "images": ["aGk="],
    }


def test_iso_timestamp_matches_javascripts_date_format() -> None:
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000Z"


def test_failed_payload_keeps_salads_message_string_and_adds_the_structured_error() -> None:
    error = ExecutionFailed("CUDA out of memory", node_id="3", node_type="KSampler", exception_type="OOM")
    payload = failed_payload("job-1", {"3": {}}, error)
    assert payload == {
        "id": "job-1",
        "prompt": {"3": {}},
        "error": "CUDA out of memory",
        "error_detail": error.to_dict(),
    }
    assert v2_body("prompt.failed", payload, epoch_s=NOW)["error_detail"]["details"]["node_id"] == "3"
