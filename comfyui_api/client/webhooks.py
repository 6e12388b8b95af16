"""`verify_webhook`: check a Standard Webhooks delivery (webhook_v2, system events) before trusting it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from comfyui_api.client.errors import WebhookVerificationError
from comfyui_api.settings import decode_webhook_secret  # stdlib only: no server dependency comes with it

TOLERANCE_S = 300  # Standard Webhooks: refuse timestamps more than five minutes away (replays)


def verify_webhook(headers: Mapping[str, str], body: bytes | str, secret: str, *, now_s: float | None = None) -> Any:
    """The delivery's JSON payload when its `webhook-signature` matches `body` under `secret` (WEBHOOK_SECRET,
    with or without `whsec_`) and its `webhook-timestamp` is within five minutes; else WebhookVerificationError."""
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, stamp, signatures = (lowered.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now_s is None else now_s) - timestamp) > TOLERANCE_S:
        raise WebhookVerificationError("webhook-timestamp is too far from now (a replay?)")
    try:
        key = decode_webhook_secret(secret)
    except ValueError as exc:
        raise WebhookVerificationError(str(exc)) from None
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except ValueError:
            continue
        if hmac.compare_digest(given, expected):
            return json.loads(raw)
    raise WebhookVerificationError("no webhook-signature matches the body")
