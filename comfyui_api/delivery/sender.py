"""One JSON POST to a receiver, with retries: per-attempt timeout, exponential backoff with full jitter, Retry-After,
and (when a signer is given) a fresh Standard Webhooks signature per attempt. A body is bytes, or a `BodySource`
(a callable giving a fresh async iterator of its bytes) for bodies too big to hold: each attempt reads it twice,
once to measure and sign it, once to send it, so memory stays flat whatever the size.

Public surface: `RetryPolicy`, `DeliveryOutcome`, `WebhookSender.post(...)`, `WebhookSender.aclose()`,
`parse_retry_after(...)`. Owns one lazily created httpx client (proxies from HTTP_PROXY/HTTPS_PROXY/NO_PROXY via
httpx's trust_env). Runs nothing in the background and never logs a secret or a URL's query string.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from comfyui_api.delivery.signing import WebhookSigner, finish_signature, signature_headers
from comfyui_api.errors import URLRefused

logger = logging.getLogger(__name__)

HttpClientFactory = Callable[[], httpx.AsyncClient]
Sleep = Callable[[float], Awaitable[None]]
BodySource = Callable[[], AsyncIterator[bytes]]
"""A body read piece by piece; every call starts it again from the beginning."""

USER_AGENT = "comfyui-api-webhooks"
_INLINE_HASH_BYTES = 64 * 1024  # larger pieces are hashed in a worker thread (hashlib releases the GIL)


def default_http_client() -> httpx.AsyncClient:
    # trust_env (the default) routes through HTTP_PROXY/HTTPS_PROXY and honours NO_PROXY; redirects are not
    # followed because a redirected POST would silently change method or lose its body.
    return httpx.AsyncClient(trust_env=True, follow_redirects=False, headers={"user-agent": USER_AGENT})


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` counts every try, the first included (compat: salad's PROMPT_WEBHOOK_RETRIES counts tries)."""

    attempts: int = 3
    timeout_s: float = 10.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0

    def backoff_s(self, retry_number: int, draw: float) -> float:
        """Full jitter: a uniform draw in [0, base * 2**(n-1)], the ceiling capped at backoff_max_s."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** max(0, retry_number - 1)))
        return max(0.0, draw) * ceiling


@dataclass(frozen=True)
class DeliveryOutcome:
    delivered: bool
    attempts: int
    status_code: int | None = None  # of the last response, if any
    error: str | None = None  # why the last attempt failed


async def aclose_body(pieces: AsyncIterator[Any]) -> None:
    """Close a body iterator (an async generator's `finally` then runs now, not at garbage collection)."""
    closer = getattr(pieces, "aclose", None)
    if closer is not None:
        await closer()


def parse_retry_after(value: str | None, *, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unusable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_s)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: no credentials, no query (receivers often put tokens there)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "<invalid url>"
    host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{host}{port}{parsed.path}"


def _is_retryable(status_code: int) -> bool:
    return status_code in (408, 429) or status_code >= 500


@dataclass(frozen=True)
class _AttemptResult:
    status_code: int | None
    retry_after: str | None
    error: str | None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class WebhookSender:
    """POSTs JSON bodies with the retry policy; `slots` (optional) bounds how many attempts are in flight at once."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        signer: WebhookSigner | None = None,
        http_client_factory: HttpClientFactory = default_http_client,
        slots: asyncio.Semaphore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Callable[[], float] = random.random,
        success_log_level: int = logging.INFO,
    ):
        self.policy = policy
        self._signer = signer
        self._client_factory = http_client_factory
        self._client: httpx.AsyncClient | None = None
        self._slots = slots
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._success_log_level = success_log_level

    async def post(self, url: str, body: bytes | BodySource, *, msg_id: str, what: str) -> DeliveryOutcome:
        """Deliver `body` to `url`; `msg_id` is the webhook-id, `what` names the delivery in the final log line."""
        attempts = max(1, self.policy.attempts)
        result = _AttemptResult(None, None, "not attempted")
        attempt = 0
        for attempt in range(1, attempts + 1):
            result = await self._attempt_in_slot(url, body, msg_id)
            if result.ok or result.permanent or attempt == attempts:
                break
            await self._sleep(self._delay_s(attempt, result))
        outcome = DeliveryOutcome(result.ok, attempt, result.status_code, None if result.ok else result.error)
        self._log_outcome(outcome, url, what)
        return outcome

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _delay_s(self, attempt: int, result: _AttemptResult) -> float:
        retry_after_s = parse_retry_after(result.retry_after, now_s=self._clock())
        if retry_after_s is not None:
            return min(retry_after_s, self.policy.retry_after_max_s)
        return self.policy.backoff_s(attempt, self._draw())

    async def _attempt_in_slot(self, url: str, body: bytes | BodySource, msg_id: str) -> _AttemptResult:
        if self._slots is None:
            return await self._attempt(url, body, msg_id)
        async with self._slots:
            return await self._attempt(url, body, msg_id)

    async def _measure(self, source: BodySource, msg_id: str) -> dict[str, str]:
        """Content-Length and (with a signer) the signature headers of a streamed body, from one pass over it."""
        stamp = int(self._clock())
        mac = self._signer.start_signature(msg_id, stamp) if self._signer is not None else None
        size_bytes = 0
        pieces = source()
        try:
            async for piece in pieces:
                size_bytes += len(piece)
                if mac is None:
                    continue
                if len(piece) > _INLINE_HASH_BYTES:
                    await asyncio.to_thread(mac.update, piece)
                else:
                    mac.update(piece)
        finally:
            await aclose_body(pieces)
        headers = {"content-length": str(size_bytes)}
        if mac is not None:
            headers.update(signature_headers(msg_id, stamp, finish_signature(mac)))
        return headers

    async def _attempt(self, url: str, body: bytes | BodySource, msg_id: str) -> _AttemptResult:
        headers = {"content-type": "application/json"}
        content: bytes | AsyncIterator[bytes]
        if isinstance(body, bytes):
            content = body
            if self._signer is not None:
                headers.update(self._signer.headers(msg_id, body, timestamp_s=self._clock()))
        else:
            try:
                headers.update(await self._measure(body, msg_id))
            except (OSError, ValueError) as exc:  # e.g. an output file vanished: no later attempt can do better
                return _AttemptResult(None, None, f"body could not be read: {exc}", permanent=True)
            content = body()
        try:
            return await self._send(url, content, headers)
        finally:
            if not isinstance(content, bytes):
                await aclose_body(content)  # an attempt cut short leaves the body half read

    async def _send(self, url: str, content: bytes | AsyncIterator[bytes], headers: dict[str, str]) -> _AttemptResult:
        if self._client is None:
            self._client = self._client_factory()
        client = self._client
        timeout_s = self.policy.timeout_s
        try:
            # httpx's timeout bounds each phase; asyncio.timeout bounds the whole attempt (a receiver that
            # trickles its answer byte by byte would otherwise hold it open forever).
            async with asyncio.timeout(timeout_s):
                request = client.build_request("POST", url, content=content, headers=headers, timeout=timeout_s)
                response = await client.send(request, stream=True)
                await response.aclose()
        except TimeoutError:
            return _AttemptResult(None, None, f"no answer within {timeout_s:g}s")
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return _AttemptResult(None, None, f"unusable URL: {exc}", permanent=True)
        except URLRefused as exc:  # the outbound guard: no later attempt can do better
            return _AttemptResult(None, None, f"refused: {exc.message}", permanent=True)
        except httpx.TimeoutException:
            return _AttemptResult(None, None, f"no answer within {timeout_s:g}s")
        except httpx.HTTPError as exc:
            return _AttemptResult(None, None, f"{type(exc).__name__}: {exc}")
        code = response.status_code
        error = None if 200 <= code < 300 else f"HTTP {code}"
        permanent = error is not None and not _is_retryable(code)
        return _AttemptResult(code, response.headers.get("retry-after"), error, permanent)

    def _log_outcome(self, outcome: DeliveryOutcome, url: str, what: str) -> None:
        target = redact_url(url)
        if outcome.delivered:
            logger.log(
                self._success_log_level,
                "%s delivered to %s (HTTP %s, attempt %d)",
                what,
                target,
                outcome.status_code,
                outcome.attempts,
            )
        else:
            logger.warning(
                "%s NOT delivered to %s after %d attempt(s): %s", what, target, outcome.attempts, outcome.error
            )
