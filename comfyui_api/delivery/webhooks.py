"""Per-job webhooks: `webhook_v2` (signed, `prompt.complete` / `prompt.failed`) and the deprecated v1 `webhook`
(unsigned, one `output.complete` per output, `prompt.failed`). Deliveries run as tracked background tasks.

Public surface of `WebhookDelivery(settings.webhooks)`:
  submit(url, event_type, job_id, payload) -> Task       v2, in the background (never blocks the caller)
  submit_streamed(url, event_type, job_id, source) -> Task   v2 for a payload too big to hold, read from `source`
  await deliver(url, event_type, job_id, payload)        v2, awaited; returns a DeliveryOutcome
  await submit_v1_outputs(url, job_id, prompt=, stats=, files=[(filename, bytes | Path)]) -> [Task]
  submit_v1_failed(url, job_id, prompt=, error=) -> Task
  await aclose(timeout_s)                                waits for pending deliveries, then cancels the rest
The v2 body is Salad's: {"type", "timestamp", **payload}; the caller builds the payload: for prompt.complete the
body a synchronous request would get, for prompt.failed `failed_payload(job_id, prompt, error)`.
This module never raises into the job that produced the payload.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from comfyui_api.delivery.sender import (
    BodySource,
    DeliveryOutcome,
    HttpClientFactory,
    RetryPolicy,
    Sleep,
    WebhookSender,
    aclose_body,
    default_http_client,
)
from comfyui_api.delivery.signing import WebhookSigner
from comfyui_api.errors import ComfyApiError
from comfyui_api.settings import WebhookSettings

logger = logging.getLogger(__name__)

PROMPT_COMPLETE = "prompt.complete"
PROMPT_FAILED = "prompt.failed"
OUTPUT_COMPLETE = "output.complete"

V1File = tuple[str, bytes | Path]
"""(filename as the receiver should see it, the bytes or a local file holding them)."""

_V1_WARNED_JOBS_KEPT = 1024  # enough to cover every job in flight; older ids are forgotten


def iso_timestamp(epoch_s: float) -> str:
    """`2024-05-01T12:00:00.123Z`, the same shape as JavaScript's Date.toISOString() (compat: salad)."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def v2_body(event_type: str, payload: Mapping[str, Any], *, epoch_s: float) -> dict[str, Any]:
    """Salad's webhook_v2 shape: type and timestamp first, then the payload's own fields."""
    body: dict[str, Any] = {"type": event_type, "timestamp": iso_timestamp(epoch_s)}
    body.update((key, value) for key, value in payload.items() if key not in body)
    return body


async def v2_streamed_body(event_type: str, payload: BodySource, *, epoch_s: float) -> AsyncGenerator[bytes, None]:
    """`v2_body` for a payload given as the bytes of one JSON object: its opening brace becomes the v2 head."""
    head = (
        b'{"type":' + msgspec.json.encode(event_type) + b',"timestamp":' + msgspec.json.encode(iso_timestamp(epoch_s))
    )
    first = True
    pieces = payload()
    try:
        async for piece in pieces:
            if first and piece:
                first = False
                body = piece.lstrip()
                if not body.startswith(b"{"):
                    raise ValueError("a streamed webhook payload must be a JSON object")
                rest = body[1:].lstrip()
                yield head + (rest if rest.startswith(b"}") else b"," + rest)
            elif piece:
                yield piece
    finally:
        await aclose_body(pieces)
    if first:
        raise ValueError("a streamed webhook payload was empty")


def failed_payload(job_id: str, prompt: Any, error: ComfyApiError) -> dict[str, Any]:
    """The payload of `prompt.failed`: Salad's `error` message string (compat: salad), plus the structured error."""
    return {"id": job_id, "prompt": prompt, "error": error.message, "error_detail": error.to_dict()}


def _v1_output_body(job_id: str, filename: str, source: bytes | Path, prompt: Any, stats: Any) -> bytes:
    data = source.read_bytes() if isinstance(source, Path) else source
    return msgspec.json.encode(
        {
            "event": OUTPUT_COMPLETE,
            "image": base64.b64encode(data).decode("ascii"),
            "id": job_id,
            "filename": filename,
            "prompt": prompt,
            "stats": stats,
        }
    )


class WebhookDelivery:
    def __init__(
        self,
        settings: WebhookSettings,
        *,
        http_client_factory: HttpClientFactory = default_http_client,
        max_concurrency: int = 16,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ):
        policy = RetryPolicy(
            attempts=settings.retries, timeout_s=settings.timeout_s, backoff_base_s=settings.backoff_base_s
        )
        slots = asyncio.Semaphore(max(1, max_concurrency))
        common: dict[str, Any] = {
            "http_client_factory": http_client_factory,
            "slots": slots,
            "clock": clock,
            "sleep": sleep,
            "draw": draw,
        }
        signer = WebhookSigner(settings.secret) if settings.secret else None
        self._signed = WebhookSender(policy, signer=signer, **common)
        # v1 is never signed (compat: salad), but shares the client factory, the policy and the slots.
        self._unsigned = WebhookSender(policy, **common)
        self._clock = clock
        self._tasks: set[asyncio.Task[DeliveryOutcome]] = set()
        self._v1_warned: OrderedDict[str, None] = OrderedDict()
        self._closed = False

    @property
    def pending(self) -> int:
        """Deliveries not finished yet (including ones waiting between retries)."""
        return len(self._tasks)

    async def deliver(self, url: str, event_type: str, job_id: str, payload: Mapping[str, Any]) -> DeliveryOutcome:
        """Send one webhook_v2 event now and wait for the final outcome (all retries)."""
        what = f"webhook {event_type} for job {job_id}"
        try:
            body = await asyncio.to_thread(msgspec.json.encode, v2_body(event_type, payload, epoch_s=self._clock()))
        except (TypeError, msgspec.EncodeError) as exc:
            logger.error("%s NOT delivered: payload is not JSON-serialisable (%s)", what, exc)
            return DeliveryOutcome(False, 0, None, "payload is not JSON-serialisable")
        return await self._signed.post(url, body, msg_id=job_id, what=what)

    def submit(
        self, url: str, event_type: str, job_id: str, payload: Mapping[str, Any]
    ) -> asyncio.Task[DeliveryOutcome]:
        """Start `deliver(...)` in the background and return its task (tracked; awaited by aclose)."""
        return self._spawn(self.deliver(url, event_type, job_id, payload), job_id)

    def submit_streamed(
        self, url: str, event_type: str, job_id: str, source: BodySource
    ) -> asyncio.Task[DeliveryOutcome]:
        """Like `submit`, for a payload too big to hold in memory: `source()` yields the payload's JSON object, and is
        read twice per attempt (to sign, to send). Whatever it reads must stay in place until the task is done."""
        epoch_s = self._clock()

        def body() -> AsyncIterator[bytes]:
            return v2_streamed_body(event_type, source, epoch_s=epoch_s)

        what = f"webhook {event_type} for job {job_id}"
        return self._spawn(self._signed.post(url, body, msg_id=job_id, what=what), job_id)

    async def submit_v1_outputs(
        self, url: str, job_id: str, *, prompt: Any, stats: Any, files: Sequence[V1File]
    ) -> list[asyncio.Task[DeliveryOutcome]]:
        """Deprecated v1: one `output.complete` POST per file. Reads and encodes the files before returning, so
        the caller may remove them afterwards; the POSTs themselves run in the background."""
        self._warn_v1(job_id)
        tasks = []
        for filename, source in files:
            body = await asyncio.to_thread(_v1_output_body, job_id, filename, source, prompt, stats)
            what = f"webhook {OUTPUT_COMPLETE} ({filename}) for job {job_id}"
            tasks.append(self._spawn(self._unsigned.post(url, body, msg_id=job_id, what=what), job_id))
        return tasks

    def submit_plain(
        self, url: str, job_id: str, payload: Mapping[str, Any], what: str
    ) -> asyncio.Task[DeliveryOutcome]:
        """POST `payload` as it is (JSON, no envelope, no signature), with the same retries: RunPod's webhook."""
        body = msgspec.json.encode(payload)
        return self._spawn(self._unsigned.post(url, body, msg_id=job_id, what=f"{what} for job {job_id}"), job_id)

    def submit_v1_failed(
        self, url: str, job_id: str, *, prompt: Any, error: ComfyApiError
    ) -> asyncio.Task[DeliveryOutcome]:
        """Deprecated v1: `{"event": "prompt.failed", "id", "prompt", "error": message, "error_detail": {...}}`."""
        self._warn_v1(job_id)
        body = msgspec.json.encode(
            {
                "event": PROMPT_FAILED,
                "id": job_id,
                "prompt": prompt,
                "error": error.message,
                "error_detail": error.to_dict(),
            }
        )
        what = f"webhook {PROMPT_FAILED} for job {job_id}"
        return self._spawn(self._unsigned.post(url, body, msg_id=job_id, what=what), job_id)

    async def aclose(self, timeout_s: float) -> None:
        """Stop accepting deliveries, wait up to `timeout_s` for pending ones, cancel the rest, close the client."""
        self._closed = True
        tasks = set(self._tasks)
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=max(0.0, timeout_s))
            if unfinished:
                logger.warning("abandoning %d webhook deliveries still pending at shutdown", len(unfinished))
                for task in unfinished:
                    task.cancel()
                await asyncio.gather(*unfinished, return_exceptions=True)
        await self._signed.aclose()
        await self._unsigned.aclose()

    def _spawn(self, work: Coroutine[Any, Any, DeliveryOutcome], job_id: str) -> asyncio.Task[DeliveryOutcome]:
        if self._closed:
            work.close()
            raise RuntimeError("webhook delivery is closed")
        task = asyncio.create_task(self._guarded(work, job_id), name=f"webhook:{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, DeliveryOutcome], job_id: str) -> DeliveryOutcome:
        try:
            return await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # task boundary: a delivery bug must not surface as an unhandled task error
            logger.exception("webhook delivery for job %s crashed", job_id)
            return DeliveryOutcome(False, 0, None, f"internal error: {type(exc).__name__}")

    def _warn_v1(self, job_id: str) -> None:
        if job_id in self._v1_warned:
            return
        self._v1_warned[job_id] = None
        while len(self._v1_warned) > _V1_WARNED_JOBS_KEPT:
            self._v1_warned.popitem(last=False)
        logger.warning("job %s: `webhook` is deprecated; use `webhook_v2` (signed, one event per job)", job_id)


__all__ = [
    "OUTPUT_COMPLETE",
    "PROMPT_COMPLETE",
    "PROMPT_FAILED",
    "DeliveryOutcome",
    "V1File",
    "WebhookDelivery",
    "default_http_client",
    "failed_payload",
    "iso_timestamp",
    "v2_body",
    "v2_streamed_body",
]
