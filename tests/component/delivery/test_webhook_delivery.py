"""WebhookDelivery against a real HTTP receiver on loopback; signatures checked with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from comfyui_api.delivery.webhooks import PROMPT_COMPLETE, PROMPT_FAILED, WebhookDelivery
from comfyui_api.errors import ExecutionFailed
from comfyui_api.settings import WebhookSettings
from tests.servers.webhook_receiver import Reply, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"a 32 byte key for the test suite").decode()


class FakeTime:
    """A wall clock that only moves when the code under test sleeps; sleeps are recorded, not waited."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make_delivery(fake: FakeTime | None = None, **overrides: object) -> WebhookDelivery:
    settings = WebhookSettings(**{"secret": SECRET, "retries": 3, "timeout_s": 5.0, **overrides})  # type: ignore[arg-type]
    if fake is None:
        return WebhookDelivery(settings, draw=lambda: 1.0)
    return WebhookDelivery(settings, clock=fake.clock, sleep=fake.sleep, draw=lambda: 1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


def complete_payload(job_id: str) -> dict[str, object]:
    return {"id": job_id, "prompt": {"1": {"class_type": "SaveImage"}}, "images": ["aGk="], "filenames": ["a.png"]}


async def test_v2_complete_is_signed_and_shaped_like_salads(receiver: WebhookReceiver) -> None:
    delivery = make_delivery()
    outcome = await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-1", complete_payload("job-1"))
    await delivery.aclose(1.0)

    assert outcome.delivered and outcome.attempts == 1 and outcome.status_code == 200
    [request] = receiver.received()
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == "job-1"
    body = Webhook(SECRET).verify(request.body, request.headers)
    assert body["type"] == "prompt.complete"
    assert body["timestamp"].endswith("Z")
    assert {k: body[k] for k in ("id", "images", "filenames")} == {
        "id": "job-1",
        "images": ["aGk="],
        "filenames": ["a.png"],
    }


async def test_unsigned_when_no_secret(receiver: WebhookReceiver) -> None:
    delivery = make_delivery(secret=None)
    assert (await delivery.deliver(receiver.url(), PROMPT_FAILED, "job-2", {"id": "job-2", "error": "x"})).delivered
    await delivery.aclose(1.0)
    [request] = receiver.received()
    assert "webhook-signature" not in request.headers
    assert request.json()["type"] == "prompt.failed"


async def test_two_failures_then_success_is_three_signed_attempts_one_accepted(receiver: WebhookReceiver) -> None:
    fake = FakeTime()
    receiver.script("/hook", Reply(500), Reply(500), Reply(200))
    delivery = make_delivery(fake)
    outcome = await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-3", complete_payload("job-3"))
    await delivery.aclose(1.0)

    assert outcome.delivered and outcome.attempts == 3
    requests = receiver.received()
    assert [r.answered_with for r in requests] == [500, 500, 200]
    assert fake.sleeps == [1.0, 2.0]  # full jitter drawn at its ceiling: base, then doubled
    timestamps = [r.headers["webhook-timestamp"] for r in requests]
    assert len(set(timestamps)) == 3
    assert len({r.headers["webhook-signature"] for r in requests}) == 3
    assert {r.body for r in requests} == {requests[0].body}  # same event, re-signed
    for request in requests:
        assert Webhook(SECRET).verify(request.body, request.headers)["id"] == "job-3"


async def test_retry_after_is_honoured_in_seconds_and_as_a_date_and_capped(receiver: WebhookReceiver) -> None:
    fake = FakeTime()
    # the date is read after the first 7 s wait, so it lies 42 s beyond that point
    date = format_datetime(datetime.fromtimestamp(fake.now + 7 + 42, UTC), usegmt=True)
    receiver.script(
        "/hook",
        Reply(503, headers={"Retry-After": "7"}),
        Reply(429, headers={"Retry-After": date}),
        Reply(200),
    )
    delivery = make_delivery(fake, retries=5)
    assert (await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-4", {"id": "job-4"})).delivered
    assert fake.sleeps[0] == 7.0
    assert 41.0 <= fake.sleeps[1] <= 42.0  # an HTTP date has a resolution of one second

    receiver.script("/capped", Reply(503, headers={"Retry-After": "86400"}), Reply(204))
    assert (await delivery.deliver(receiver.url("/capped"), PROMPT_COMPLETE, "job-5", {"id": "job-5"})).delivered
    assert fake.sleeps[2] == 300.0
    await delivery.aclose(1.0)


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
async def test_client_errors_are_not_retried(receiver: WebhookReceiver, status: int) -> None:
    fake = FakeTime()
    receiver.script("/hook", Reply(status))
    delivery = make_delivery(fake)
    outcome = await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-6", {"id": "job-6"})
    await delivery.aclose(1.0)
    assert not outcome.delivered and outcome.attempts == 1 and outcome.status_code == status
    assert len(receiver.received()) == 1 and fake.sleeps == []


@pytest.mark.parametrize("status", [408, 429, 502])
async def test_timeouts_throttling_and_server_errors_are_retried(receiver: WebhookReceiver, status: int) -> None:
    fake = FakeTime()
    receiver.script("/hook", Reply(status), Reply(status), Reply(status))
    delivery = make_delivery(fake)
    outcome = await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-7", {"id": "job-7"})
    await delivery.aclose(1.0)
    assert not outcome.delivered and outcome.attempts == 3 and outcome.error == f"HTTP {status}"
    assert len(receiver.received()) == 3


async def test_a_hanging_receiver_does_not_delay_another_delivery(receiver: WebhookReceiver) -> None:
    receiver.script("/hang", Reply(hang=True))
    delivery = make_delivery(retries=1, timeout_s=60.0)
    stuck = delivery.submit(receiver.url("/hang"), PROMPT_COMPLETE, "job-hang", {"id": "job-hang"})
    await receiver.wait_for(1, path="/hang")
    fine = delivery.submit(receiver.url("/ok"), PROMPT_COMPLETE, "job-ok", {"id": "job-ok"})
    outcome = await asyncio.wait_for(fine, timeout=30)
    assert outcome.delivered
    assert not stuck.done() and delivery.pending == 1
    await delivery.aclose(0.05)  # shutdown abandons what is still hanging
    assert stuck.cancelled() and delivery.pending == 0


async def test_each_attempt_is_bounded_by_the_timeout(receiver: WebhookReceiver) -> None:
    receiver.script("/hang", Reply(hang=True), Reply(hang=True))
    fake_sleep = FakeTime()
    delivery = WebhookDelivery(WebhookSettings(retries=2, timeout_s=0.2), sleep=fake_sleep.sleep, draw=lambda: 0.0)
    outcome = await asyncio.wait_for(delivery.deliver(receiver.url("/hang"), PROMPT_FAILED, "job-t", {}), timeout=30)
    await delivery.aclose(1.0)
    assert not outcome.delivered and outcome.attempts == 2
    assert outcome.error == "no answer within 0.2s"


async def test_unreachable_receiver_and_unusable_url(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="comfyui_api.delivery")
    fake = FakeTime()
    delivery = make_delivery(fake)
    async with WebhookReceiver() as gone:
        dead_url = gone.url("/hook?token=SECRET-QUERY")
    refused = await delivery.deliver(dead_url, PROMPT_COMPLETE, "job-8", {"id": "job-8"})
    assert not refused.delivered and refused.attempts == 3 and refused.error and "Connect" in refused.error
    bad = await delivery.deliver("ftp://example.invalid/x", PROMPT_COMPLETE, "job-9", {})
    assert not bad.delivered and bad.attempts == 1
    await delivery.aclose(1.0)
    log = caplog.text
    assert "job-8" in log and "NOT delivered" in log and "job-9" in log
    assert "SECRET-QUERY" not in log and SECRET not in log and SECRET.removeprefix("whsec_") not in log


async def test_submitted_deliveries_run_in_the_background_and_aclose_waits(receiver: WebhookReceiver) -> None:
    receiver.script("/slow", Reply(delay_s=0.2))
    delivery = make_delivery()
    tasks = [delivery.submit(receiver.url("/slow"), PROMPT_COMPLETE, f"job-{i}", {"id": f"job-{i}"}) for i in range(5)]
    assert delivery.pending == 5
    await delivery.aclose(30.0)
    assert all(t.done() and t.result().delivered for t in tasks)
    assert sorted(r.headers["webhook-id"] for r in receiver.received()) == [f"job-{i}" for i in range(5)]
    with pytest.raises(RuntimeError):
        delivery.submit(receiver.url(), PROMPT_COMPLETE, "late", {})


async def test_proxy_environment_is_honoured(receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY routes the POST through the proxy (here the receiver itself, which sees the absolute URL)."""
    monkeypatch.setenv("HTTP_PROXY", receiver.url(""))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    delivery = make_delivery()
    target = "http://hooks.example.invalid/in"
    assert (await delivery.deliver(target, PROMPT_COMPLETE, "job-p", {"id": "job-p"})).delivered
    await delivery.aclose(1.0)
    [request] = receiver.received()
    assert request.headers["host"] == "hooks.example.invalid"
    assert request.path == "/in"


async def test_v1_posts_one_unsigned_output_complete_per_file(
    receiver: WebhookReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    on_disk = tmp_path / "b.png"
    on_disk.write_bytes(b"\x89PNG file bytes")
    delivery = make_delivery()
    caplog.set_level(logging.WARNING, logger="comfyui_api.delivery")
    prompt = {"9": {"class_type": "SaveImage", "inputs": {}}}
    stats = {"total_time": 12}
    tasks = await delivery.submit_v1_outputs(
        receiver.url(), "job-v1", prompt=prompt, stats=stats, files=[("a.png", b"bytes of a"), ("b.png", on_disk)]
    )
    on_disk.unlink()  # allowed: the files were read before submit_v1_outputs returned
    error = ExecutionFailed("boom", node_id="9", node_type="SaveImage", exception_type="OSError")
    tasks.append(delivery.submit_v1_failed(receiver.url(), "job-v1", prompt=prompt, error=error))
    await delivery.aclose(30.0)

    assert all(t.result().delivered for t in tasks)
    bodies = sorted((r.json() for r in receiver.received()), key=lambda b: (b["event"], b.get("filename", "")))
    assert all("webhook-signature" not in r.headers for r in receiver.received())
    assert bodies[0] == {
        "event": "output.complete",
        "image": base64.b64encode(b"bytes of a").decode(),
        "id": "job-v1",
        "filename": "a.png",
        "prompt": prompt,
        "stats": stats,
    }
    assert bodies[1]["filename"] == "b.png" and base64.b64decode(bodies[1]["image"]) == b"\x89PNG file bytes"
    assert bodies[2]["event"] == "prompt.failed" and bodies[2]["error"] == "boom"
    assert bodies[2]["error_detail"]["type"] == "execution_failed"
    assert [m for m in caplog.messages if "deprecated" in m] == [caplog.messages[0]]  # once for the job


async def test_client_factory_is_used_and_closed(receiver: WebhookReceiver) -> None:
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient(headers={"x-custom": "yes"}))
        return made[-1]

    delivery = WebhookDelivery(WebhookSettings(), http_client_factory=factory)
    assert (await delivery.deliver(receiver.url(), PROMPT_COMPLETE, "job-f", {})).delivered
    await delivery.aclose(1.0)
    assert receiver.received()[0].headers["x-custom"] == "yes"
    assert len(made) == 1 and made[0].is_closed
