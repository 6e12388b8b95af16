"""SystemEventPublisher against a real HTTP receiver: filtering, prompt_id rewriting, metadata, coalescing."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from comfyui_api.delivery.system_events import SystemEventPublisher, qualified_name
from comfyui_api.settings import SYSTEM_EVENT_NAMES, WebhookSettings
from tests.servers.webhook_receiver import Reply, WebhookReceiver

SECRET = base64.b64encode(b"system events key, 32 bytes long").decode()
OURS = {"comfy-prompt-1": "job-1", "comfy-prompt-2": "job-2"}


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as server:
        yield server


def make_publisher(
    receiver: WebhookReceiver, events: frozenset[str] | tuple[str, ...], **kw: Any
) -> SystemEventPublisher:
    settings = WebhookSettings(
        secret=SECRET,
        retries=kw.pop("retries", 1),
        timeout_s=5.0,
        system_url=receiver.url("/system"),
        system_events=frozenset(events),
        system_meta={"node": "gpu-7", "region": "eu"},
        system_flush_interval_s=kw.pop("flush_s", 30.0),
    )
    return SystemEventPublisher(settings, job_id_for=OURS.get, **kw)


def progress(value: int, node: str = "3", prompt: str = "comfy-prompt-1") -> dict[str, Any]:
    return {"value": value, "max": 200, "prompt_id": prompt, "node": node}


def bodies(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    return [Webhook(SECRET).verify(r.body, r.headers) for r in receiver.received("/system")]


async def test_bursts_of_progress_are_coalesced_to_the_latest_value(receiver: WebhookReceiver) -> None:
    publisher = make_publisher(receiver, ("progress", "executing"))
    publisher.publish("executing", {"node": "3", "display_node": "3", "prompt_id": "comfy-prompt-1"})
    for step in range(200):
        publisher.publish("progress", progress(step))
        publisher.publish("progress", progress(step, node="8"))
    assert await publisher.flush() == 3
    await publisher.aclose()

    received = bodies(receiver)
    assert [b["event"] for b in received] == ["comfy.executing", "comfy.progress", "comfy.progress"]
    assert received[1]["data"] == {"value": 199, "max": 200, "prompt_id": "job-1", "node": "3"}
    assert received[2]["data"]["node"] == "8" and received[2]["data"]["value"] == 199
    assert all(b["metadata"] == {"node": "gpu-7", "region": "eu"} for b in received)
    assert len({r.headers["webhook-id"] for r in receiver.received()}) == 3


async def test_the_periodic_flush_turns_a_fast_sampler_into_a_handful_of_posts(receiver: WebhookReceiver) -> None:
    publisher = make_publisher(receiver, ("progress",), flush_s=0.1)
    publisher.start()
    for step in range(200):  # about 0.5 s of a very fast sampler
        publisher.publish("progress", progress(step))
        await asyncio.sleep(0.0025)
    await receiver.wait_for(1, path="/system")
    await publisher.aclose(timeout_s=10.0)

    received = bodies(receiver)
    assert 1 <= len(received) <= 40  # generous: one per window, however slow this machine is
    values = [b["data"]["value"] for b in received]
    assert values == sorted(values) and values[-1] == 199


async def test_filter_rewrite_and_event_names(receiver: WebhookReceiver) -> None:
    publisher = make_publisher(receiver, ("execution_start", "progress_state", "storage.file_uploaded"))
    publisher.publish("status", {"status": {"exec_info": {"queue_remaining": 1}}})  # not configured
    publisher.publish("execution_start", {"prompt_id": "comfy-prompt-2", "timestamp": 1})
    publisher.publish("execution_start", {"prompt_id": "not-ours", "timestamp": 2})
    publisher.publish(
        "progress_state",
        {
            "prompt_id": "comfy-prompt-1",
            "nodes": {"3": {"value": 1, "max": 4, "state": "running", "node_id": "3", "prompt_id": "comfy-prompt-1"}},
        },
    )
    publisher.publish("file_uploaded", {"url": "s3://b/k.png", "local_path": "/x/k.png", "size": 3, "duration": 0.1})
    publisher.publish("storage.file_deleted", {"url": "s3://b/k.png"})  # not configured
    publisher.publish("no_such_event", {"prompt_id": "comfy-prompt-1"})
    await publisher.flush()
    await publisher.aclose()

    received = bodies(receiver)
    assert [b["event"] for b in received] == [
        "comfy.execution_start",
        "comfy.execution_start",
        "comfy.progress_state",
        "storage.file_uploaded",
    ]
    assert received[0]["data"] == {"prompt_id": "job-2", "timestamp": 1}
    assert received[1]["data"]["prompt_id"] == "not-ours"  # someone else's prompt keeps ComfyUI's id
    assert received[2]["data"]["prompt_id"] == "job-1"
    assert received[2]["data"]["nodes"]["3"]["prompt_id"] == "job-1"
    assert received[3]["data"]["url"] == "s3://b/k.png"


async def test_publish_never_mutates_the_callers_data_or_raises(receiver: WebhookReceiver) -> None:
    def failing_mapping(prompt_id: str) -> str | None:
        raise KeyError(prompt_id)

    settings = WebhookSettings(system_url=receiver.url("/system"), system_events=frozenset({"progress"}))
    publisher = SystemEventPublisher(settings, job_id_for=failing_mapping)
    data = progress(1)
    publisher.publish("progress", data)  # logged, not raised
    ok = SystemEventPublisher(settings, job_id_for=OURS.get)
    ok.publish("progress", data)
    assert data["prompt_id"] == "comfy-prompt-1"
    assert await publisher.flush() == 0 and await ok.flush() == 1
    await publisher.aclose()
    await ok.aclose()
    assert receiver.received("/system")[0].json()["data"]["prompt_id"] == "job-1"


async def test_a_full_buffer_drops_the_oldest_and_says_so(
    receiver: WebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="comfyui_api.delivery")
    publisher = make_publisher(receiver, ("executing",), max_buffered_events=5)
    for node in range(12):
        publisher.publish("executing", {"node": str(node), "prompt_id": "comfy-prompt-1"})
    assert publisher.dropped_events == 7
    await publisher.flush()
    await publisher.aclose()
    assert [b["data"]["node"] for b in bodies(receiver)] == ["7", "8", "9", "10", "11"]
    assert any("dropped 7" in m for m in caplog.messages)


async def test_a_failing_receiver_never_blocks_the_publisher(receiver: WebhookReceiver) -> None:
    receiver.script("/system", *[Reply(hang=True)] * 3)
    publisher = make_publisher(receiver, ("progress",), flush_s=0.05, max_buffered_events=10)
    publisher.start()
    publisher.publish("progress", progress(0))
    await receiver.wait_for(1, path="/system")  # the flush loop is now stuck on a hanging POST
    for step in range(1, 1000):
        publisher.publish("progress", progress(step, node=str(step)))  # returns at once; the buffer is bounded
    assert publisher.dropped_events == 1000 - 1 - 10
    await publisher.aclose(timeout_s=0.2)  # gives up on the hanging receiver instead of waiting it out


async def test_disabled_without_url_or_events(receiver: WebhookReceiver) -> None:
    no_url = SystemEventPublisher(WebhookSettings(system_events=frozenset({"progress"})), job_id_for=OURS.get)
    no_events = SystemEventPublisher(WebhookSettings(system_url=receiver.url("/system")), job_id_for=OURS.get)
    for publisher in (no_url, no_events):
        assert not publisher.enabled and not publisher.wants("progress")
        publisher.start()
        publisher.publish("progress", progress(1))
        assert await publisher.flush() == 0
        await publisher.aclose()
    assert receiver.received() == []


def test_every_configurable_event_has_a_qualified_name() -> None:
    assert {name: qualified_name(name) for name in SYSTEM_EVENT_NAMES} == {
        **{name: f"comfy.{name}" for name in SYSTEM_EVENT_NAMES if not name.startswith("storage.")},
        **{name: name for name in SYSTEM_EVENT_NAMES if name.startswith("storage.")},
    }
    assert qualified_name("file_downloaded") == "storage.file_downloaded"  # compat: salad's bare storage names
    assert qualified_name("storage.nope") is None and qualified_name("b_preview") is None
