"""Asynchronous uploads through the real server: `async: true` in an upload target answers 202 at once; the objects
then appear in storage, `webhook_v2` carries their URLs (or prompt.failed when an upload failed), and storage
transfers reach the system-events webhook. Real storage servers and a real webhook receiver on loopback."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from PIL import Image

from tests.integration.server import (
    ServerProcess,
    image_graph,
    load_image_graph,
    only_kept_outputs_left,
    png_bytes,
    rgb,
    start_server,
    wait_until,
)
from tests.integration.storage_world import PROVIDERS, SECRETS, StorageWorld, storage_world
from tests.servers.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

REQUEST_TIMEOUT_S = 30.0
ARRIVAL_TIMEOUT_S = 30.0


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked: {text[:200]!r}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageWorld]:
    with storage_world(tmp_path_factory.mktemp("storage")) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as started:
        yield started


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, world: StorageWorld, receiver: WebhookReceiver
) -> Iterator[ServerProcess]:
    env = {
        **world.server_env(),
        "SYSTEM_WEBHOOK_URL": receiver.url("/system"),
        "SYSTEM_WEBHOOK_EVENTS": "file_uploaded,file_downloaded",
        "SYSTEM_WEBHOOK_FLUSH_S": "0.05",
        "WEBHOOK_BACKOFF_BASE_S": "0.1",
    }
    api = start_server(tmp_path_factory.mktemp("api"), env=env)
    try:
        yield api
    finally:
        api.stop()
        assert_no_secrets(api.logs())


async def post_prompt(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        return await client.post(server.url("/prompt"), json=body)


async def eventually(check: Callable[[], bool], timeout_s: float = ARRIVAL_TIMEOUT_S) -> None:
    """Poll a blocking `check` (in a thread) until it holds."""

    async def holds() -> bool:
        return await asyncio.to_thread(check)

    await wait_until(holds, timeout_s=timeout_s, interval_s=0.1)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_async_upload_answers_202_then_the_webhook_carries_the_urls(
    server: ServerProcess, world: StorageWorld, receiver: WebhookReceiver, provider: str
) -> None:
    field, options = world.target(provider, **{"async": True})
    job_id = f"async-{provider}"
    hook = receiver.url(f"/hook-{provider}")
    body = {"prompt": image_graph(0x2040F0), "id": job_id, field: options, "webhook_v2": hook}
    body["credentials"] = world.credentials()

    response = await post_prompt(server, body)

    assert response.status_code == 202, response.text
    assert response.json()["id"] == job_id
    [delivered] = await receiver.wait_for(1, path=f"/hook-{provider}", timeout_s=ARRIVAL_TIMEOUT_S)
    event = delivered.json()
    assert event["type"] == "prompt.complete"
    url = world.expected_url(provider, f"renders/{job_id}/{job_id}_test_00001_.png")
    assert event["images"] == [url]
    assert event["outputs"][0]["url"] == url
    assert event["stats"]["upload_time"] > 0
    assert Image.open(io.BytesIO(world.read(url))).convert("RGB").getpixel((3, 3)) == rgb(0x2040F0)
    assert "credentials" not in delivered.body.decode()
    assert_no_secrets(delivered.body.decode(), response.text)


async def test_async_upload_without_a_webhook_lands_in_storage(server: ServerProcess, world: StorageWorld) -> None:
    field, options = world.target("s3", **{"async": True})
    job_id = "async-no-webhook"

    response = await post_prompt(server, {"prompt": image_graph(0x00FF80), "id": job_id, field: options})

    assert response.status_code == 202, response.text
    url = world.expected_url("s3", f"renders/{job_id}/{job_id}_test_00001_.png")
    await eventually(lambda: world.exists(url))
    assert world.read(url).startswith(b"\x89PNG")


@pytest.mark.parametrize("provider", ["s3", "http"])
async def test_async_upload_failure_is_a_failed_webhook(
    server: ServerProcess, world: StorageWorld, receiver: WebhookReceiver, provider: str
) -> None:
    field, options = world.broken_target(provider)
    hook = receiver.url(f"/failed-{provider}")
    body = {"prompt": image_graph(), field: {**options, "async": True}, "webhook_v2": hook}
    body["credentials"] = world.credentials()

    response = await post_prompt(server, body)

    assert response.status_code == 202, response.text
    [delivered] = await receiver.wait_for(1, path=f"/failed-{provider}", timeout_s=ARRIVAL_TIMEOUT_S)
    event = delivered.json()
    assert event["type"] == "prompt.failed"
    assert event["error_detail"]["type"] == "storage_failed"
    assert "could not be uploaded" in event["error"]
    assert_no_secrets(delivered.body.decode())


async def test_storage_transfers_reach_the_system_webhook(
    server: ServerProcess, world: StorageWorld, receiver: WebhookReceiver
) -> None:
    input_url = world.put_input("s3", "system.png", png_bytes((1, 2, 3)))
    field, options = world.target("http")
    job_id = "system-events"
    body = {"prompt": load_image_graph(input_url), "id": job_id, field: options, "credentials": world.credentials()}

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text

    def events_of_job() -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for request in receiver.received("/system"):
            payload = request.json()
            for event in payload if isinstance(payload, list) else [payload]:
                if event.get("data", {}).get("id") == job_id:
                    found[event["event"]] = event["data"]
        return found

    await eventually(lambda: set(events_of_job()) == {"storage.file_downloaded", "storage.file_uploaded"})
    events = events_of_job()
    assert events["storage.file_downloaded"]["url"] == input_url
    assert events["storage.file_downloaded"]["provider"] == "s3"
    assert events["storage.file_uploaded"]["url"] == response.json()["images"][0]
    assert events["storage.file_uploaded"]["size"] == response.json()["outputs"][0]["size_bytes"]
    assert_no_secrets(*(request.body.decode() for request in receiver.received("/system")))


async def test_no_files_left_behind(server: ServerProcess) -> None:
    """Runs last: background uploads and their webhooks have cleaned up after themselves."""

    await wait_until(lambda: only_kept_outputs_left(server), timeout_s=10)
