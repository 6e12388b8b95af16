"""Standard Webhooks signing, checked with the independent `standardwebhooks` implementation."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from comfyui_api.delivery.signing import WebhookSigner, decode_webhook_secret

KEY = b"0123456789abcdef0123456789abcdef"
B64 = base64.b64encode(KEY).decode()


@pytest.mark.parametrize(
    "secret",
    [B64, "whsec_" + B64, B64.rstrip("="), "  " + B64 + "\n"],
    ids=["plain", "whsec-prefix", "unpadded", "surrounding-space"],
)
def test_secret_forms_decode_to_the_same_key(secret: str) -> None:
    assert decode_webhook_secret(secret) == KEY


@pytest.mark.parametrize("secret", ["not base64!", "whsec_***", "abc$", "=", "whsec_"])
def test_unusable_secret_is_a_clear_error_that_does_not_echo_it(secret: str) -> None:
    with pytest.raises(ValueError, match="WEBHOOK_SECRET") as caught:
        decode_webhook_secret(secret)
    if secret.strip("=_whsec"):
        assert secret not in str(caught.value)


@pytest.mark.parametrize("secret", [B64, "whsec_" + B64])
def test_headers_verify_with_standardwebhooks(secret: str) -> None:
    body = b'{"type":"prompt.complete","id":"job-1","images":["\xc3\xa9"]}'
    headers = WebhookSigner(secret).headers("job-1", body)
    assert headers["webhook-id"] == "job-1"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook("whsec_" + B64).verify(body, headers) == {
        "type": "prompt.complete",
        "id": "job-1",
        "images": ["\u00e9"],
    }


def test_signature_binds_id_timestamp_and_body() -> None:
    signer = WebhookSigner(B64)
    verifier = Webhook(B64)
    now = time.time()
    body = b'{"a":1}'
    good = signer.headers("job-1", body, timestamp_s=now)
    verifier.verify(body, good)
    tampered = [
        (b'{"a":2}', good),
        (body, {**good, "webhook-id": "job-2"}),
        (body, {**good, "webhook-timestamp": str(int(now) + 1)}),
    ]
    for data, headers in tampered:
        with pytest.raises(WebhookVerificationError):
            verifier.verify(data, headers)


def test_a_different_key_does_not_verify() -> None:
    other = base64.b64encode(b"another key entirely, 32 bytes!!").decode()
    body = b"{}"
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, WebhookSigner(B64).headers("x", body))


def test_repr_hides_the_key() -> None:
    assert B64 not in repr(WebhookSigner(B64))
    assert KEY.decode() not in repr(WebhookSigner(B64))
