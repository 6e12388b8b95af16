"""System events (SYSTEM_WEBHOOK_URL / SYSTEM_WEBHOOK_EVENTS) from the real server process, the simulator (or, with
COMFYUI_TEST_DIR, a real ComfyUI) as its ComfyUI, to a real receiver on loopback: ComfyUI's events keyed by our job
ids, SYSTEM_META_* attached, signed (verified with `standardwebhooks`), progress coalesced per flush window, filtered
by name, and never in a job's way. Each test runs its own server, since the receiver's URL is part of the server's
settings."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.server import (
    TARGET,
    ServerProcess,
    image_graph,
    load_image_graph,
    sampler_graph,
    start_server,
    wait_until,
)
from tests.servers.webhook_receiver import ReceivedRequest, Reply, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"system events key for the tests.").decode()
# 40 simulated steps of 0.05 s: several per 0.5 s flush window. A real CPU step takes longer than a window.
STEPS = TARGET.pick(simulator=40, real=4)
JOB_TAKES_S = TARGET.pick(simulator=15.0, real=240.0)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as hooks:
        yield hooks


async def serve(root: Path, receiver: WebhookReceiver, events: str, **env: str) -> ServerProcess:
    settings = {
        "WEBHOOK_SECRET": SECRET,
        "SYSTEM_WEBHOOK_URL": receiver.url("/system"),
        "SYSTEM_WEBHOOK_EVENTS": events,
        "SYSTEM_WEBHOOK_FLUSH_S": "0.5",
        "WEBHOOK_BACKOFF_BASE_S": "0.05",
        **env,
    }
    return await asyncio.to_thread(start_server, root, env=settings, step_seconds=0.05)


async def post(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=JOB_TAKES_S + 45) as client:
        return await client.post(server.url("/prompt"), json=body)


def verified(request: ReceivedRequest) -> dict[str, Any]:
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert isinstance(payload, dict)
    return payload


async def events_until(receiver: WebhookReceiver, event: str, job_id: str) -> list[dict[str, Any]]:
    """Every system event received until `event` for `job_id` arrived (signatures verified)."""

    async def arrived() -> bool:
        return any(
            body["event"] == event and body["data"].get("prompt_id") == job_id
            for body in (request.json() for request in receiver.received("/system"))
        )

    await wait_until(arrived, timeout_s=20)
    return [verified(request) for request in receiver.received("/system")]


async def test_comfyui_events_arrive_with_our_ids_and_metadata_coalesced(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    server = await serve(tmp_path, receiver, "all", SYSTEM_META_region="eu-west", SYSTEM_META_worker="w-7")
    try:
        response = await post(server, {"prompt": sampler_graph(STEPS, seed=1), "id": "sys-job"})
        assert response.status_code == 200, response.text
        bodies = await events_until(receiver, "comfy.execution_success", "sys-job")
    finally:
        await asyncio.to_thread(server.stop)
    assert all(body["metadata"] == {"region": "eu-west", "worker": "w-7"} for body in bodies)
    names = {body["event"] for body in bodies}
    assert {"comfy.status", "comfy.execution_start", "comfy.executing", "comfy.progress", "comfy.executed"} <= names
    ours = [body for body in bodies if body["data"].get("prompt_id") == "sys-job"]
    assert {body["event"] for body in ours} >= {"comfy.execution_start", "comfy.progress", "comfy.execution_success"}
    executed = [body["data"] for body in ours if body["event"] == "comfy.executed"]
    assert executed and executed[-1]["node"] == "9" and executed[-1]["output"]["images"]

    progress = [body["data"] for body in ours if body["event"] == "comfy.progress" and body["data"]["node"] == "3"]
    # Coalesced per flush window, not one POST per step (seen only where several steps fall in one window).
    assert 1 <= len(progress) <= TARGET.pick(simulator=STEPS // 2 - 1, real=STEPS)
    assert progress[-1]["value"] == STEPS  # the latest value of a window is the one kept
    assert [p["value"] for p in progress] == sorted(p["value"] for p in progress)
    assert {request.headers["webhook-id"] for request in receiver.received("/system")} != set()


async def test_only_the_named_events_are_forwarded(tmp_path: Path, receiver: WebhookReceiver) -> None:
    server = await serve(tmp_path, receiver, "execution_error,execution_success")
    try:
        (server.dirs.input / "sys-broken.png").write_bytes(b"not an image")
        failing = await post(server, {"prompt": load_image_graph("sys-broken.png"), "id": "sys-fails"})
        assert failing.status_code == 500
        working = await post(server, {"prompt": image_graph(), "id": "sys-works"})
        assert working.status_code == 200
        bodies = await events_until(receiver, "comfy.execution_success", "sys-works")
        await asyncio.sleep(1.0)  # one more flush window: nothing else may follow
        bodies = [verified(request) for request in receiver.received("/system")]
    finally:
        await asyncio.to_thread(server.stop)
    assert {body["event"] for body in bodies} == {"comfy.execution_error", "comfy.execution_success"}
    [error] = [body["data"] for body in bodies if body["event"] == "comfy.execution_error"]
    assert (error["prompt_id"], error["node_id"], error["node_type"]) == ("sys-fails", "1", "LoadImage")
    assert [body["data"]["prompt_id"] for body in bodies if body["event"] == "comfy.execution_success"] == ["sys-works"]


async def test_a_hanging_system_receiver_never_holds_up_a_job(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.script("/system", *[Reply(hang=True)] * 50)
    server = await serve(tmp_path, receiver, "all", WEBHOOK_TIMEOUT_S="60")
    try:
        for seed in range(3):
            async with asyncio.timeout(JOB_TAKES_S):
                response = await post(server, {"prompt": sampler_graph(5, seed=seed)})
            assert response.status_code == 200, response.text
            await receiver.wait_for(1, path="/system")  # the first event's POST hangs from here on
        assert len(receiver.received("/system")) == 1  # still stuck on that one POST meanwhile
    finally:
        await asyncio.to_thread(server.stop)
