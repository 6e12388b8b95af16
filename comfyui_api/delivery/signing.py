"""Standard Webhooks signing: the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers.

Public surface: `WebhookSigner(secret).headers(...)`, and for
bodies signed piece by piece `start_signature` / `finish_signature` / `signature_headers`.
Owns the key and the HMAC only; never sends anything and never logs or returns the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from comfyui_api.settings import SECRET_PREFIX, decode_webhook_secret

__all__ = ["SECRET_PREFIX", "WebhookSigner", "decode_webhook_secret", "finish_signature", "signature_headers"]


def finish_signature(mac: hmac.HMAC) -> str:
    """The `webhook-signature` value of an HMAC that has seen the whole body."""
    return "v1," + base64.b64encode(mac.digest()).decode("ascii")


def signature_headers(msg_id: str, timestamp_s: int, signature: str) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp_s), "webhook-signature": signature}


class WebhookSigner:
    """Signs one message per call; a fresh timestamp each time, so a retry carries a new, valid signature."""

    def __init__(self, secret: str):
        self._key = decode_webhook_secret(secret)

    def __repr__(self) -> str:
        return "WebhookSigner(<secret>)"

    def signature(self, msg_id: str, timestamp_s: int, body: bytes) -> str:
        """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp_s}.{body}">`."""
        mac = self.start_signature(msg_id, timestamp_s)
        mac.update(body)
        return finish_signature(mac)

    def start_signature(self, msg_id: str, timestamp_s: int) -> hmac.HMAC:
        """An HMAC over the signed prefix, for a body fed in pieces (`update`); then `finish_signature(mac)`."""
        return hmac.new(self._key, b"%s.%d." % (msg_id.encode(), timestamp_s), hashlib.sha256)

    def headers(self, msg_id: str, body: bytes, *, timestamp_s: float | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers for `body`, stamped now (or at `timestamp_s`, unix seconds)."""
        stamp = int(time.time() if timestamp_s is None else timestamp_s)
        return signature_headers(msg_id, stamp, self.signature(msg_id, stamp, body))
