"""Async jobs against the real server process (simulator as ComfyUI) and a real webhook receiver on loopback:
202 at once, one signed `prompt.complete` / `prompt.failed` per job (verified with `standardwebhooks`), retries,
a hanging receiver that delays no one else, the deprecated v1 webhook, and shutdown."""

from __future__ import annotations

import asyncio
import base64
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.server import (
    ServerProcess,
    decode_image,
    image_graph,
    load_image_graph,
    make_server,
    only_kept_outputs_left,
    rgb,
    running_server,
    sampler_graph,
    until_in_comfy_queue,
    wait_until,
)
from tests.rss import peak_rss_bytes
from tests.servers.webhook_receiver import ReceivedRequest, Reply, WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"integration-test webhook key, 32b").decode()
WEBHOOK_ENV = {
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_BACKOFF_BASE_S": "0.05",
    "WEBHOOK_TIMEOUT_S": "30",
    "PROMPT_WEBHOOK_RETRIES": "3",
}
SYNC_BODY_KEYS = {"id", "prompt", "images", "filenames", "outputs", "texts", "stats"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("async"), env=WEBHOOK_ENV)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as hooks:
        yield hooks


async def post(server: ServerProcess, body: dict[str, Any], **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(server.url("/prompt"), json=body, headers=headers)


def verified(request: ReceivedRequest) -> dict[str, Any]:
    """The body of a signed webhook, after `standardwebhooks` checked its signature (raises if it is wrong)."""
    payload = Webhook(SECRET).verify(request.body, request.headers)
    assert isinstance(payload, dict)
    return payload


async def test_webhook_v2_gets_202_then_one_signed_complete_with_the_sync_body(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    response = await post(server, {"prompt": image_graph(0x3366CC), "id": "hook-ok", "webhook_v2": receiver.url()})
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["id"], accepted["status"], accepted["job"]) == ("hook-ok", "ok", "/jobs/hook-ok")
    assert accepted["webhook_v2"] == receiver.url() and accepted["prompt"] == image_graph(0x3366CC)  # Salad's echo
    [request] = await receiver.wait_for(1)
    payload = verified(request)
    assert request.headers["webhook-id"] == "hook-ok"
    assert payload["type"] == "prompt.complete" and payload["timestamp"].endswith("Z")
    assert set(payload) == SYNC_BODY_KEYS | {"type", "timestamp"}
    assert payload["id"] == "hook-ok"
    assert decode_image(payload["images"][0]).getpixel((2, 2)) == rgb(0x3366CC)
    assert payload["filenames"] == ["hook-ok_test_00001_.png"]
    assert payload["outputs"][0]["size_bytes"] == len(base64.b64decode(payload["images"][0]))
    sync = (await post(server, {"prompt": image_graph(0x3366CC)})).json()
    assert set(payload["stats"]) == set(sync["stats"])
    assert set(payload["stats"]["comfy_execution"]) == set(sync["stats"]["comfy_execution"])
    assert set(payload["stats"]["comfy_execution"]["nodes"]) == {"1", "9"}
    await asyncio.sleep(0.3)
    assert len(receiver.received()) == 1  # exactly one event per job


async def test_202_does_not_wait_for_an_input_download_that_then_fails(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    async with WebhookReceiver() as media:
        media.script("/slow.png", Reply(hang=True))
        graph = load_image_graph(media.url("/slow.png"))
        response = await post(server, {"prompt": graph, "id": "hook-slow-input", "webhook_v2": receiver.url()})
        assert response.status_code == 202, response.text
        [download] = await media.wait_for(1, path="/slow.png")
        assert download.answered_with is None  # still hanging: the 202 did not wait for it
        assert receiver.received() == []
    # Closing the media server answers the hung download with an error: the job fails after its 202.
    [request] = await receiver.wait_for(1)
    payload = verified(request)
    assert payload["type"] == "prompt.failed"
    assert payload["id"] == "hook-slow-input"
    assert payload["error_detail"]["type"] == "input_staging_failed"
    assert payload["error_detail"]["field"] == "prompt.1.inputs.image"
    assert payload["error"] == payload["error_detail"]["message"]
    assert payload["prompt"]["1"]["inputs"]["image"].endswith("/slow.png")


async def test_missing_input_after_202_is_prompt_failed(
    server: ServerProcess, receiver: WebhookReceiver, media_url: str
) -> None:
    graph = load_image_graph(media_url + "/missing.png")
    response = await post(server, {"prompt": graph, "webhook_v2": receiver.url()})
    assert response.status_code == 202
    payload = verified((await receiver.wait_for(1))[0])
    assert payload["type"] == "prompt.failed"
    assert payload["error_detail"]["type"] == "input_staging_failed"
    assert "404" in payload["error_detail"]["message"]


async def test_runtime_failure_is_prompt_failed_with_the_node(server: ServerProcess, receiver: WebhookReceiver) -> None:
    (server.dirs.input / "hook-broken.png").write_bytes(b"this is not an image")
    try:
        body = {"prompt": load_image_graph("hook-broken.png"), "id": "hook-runtime", "webhook_v2": receiver.url()}
        assert (await post(server, body)).status_code == 202
        payload = verified((await receiver.wait_for(1))[0])
    finally:
        (server.dirs.input / "hook-broken.png").unlink()
    assert payload["type"] == "prompt.failed"
    error = payload["error_detail"]
    assert error["type"] == "execution_failed"
    details = error["details"]
    assert (details["node_id"], details["node_type"]) == ("1", "LoadImage")
    assert "UnidentifiedImageError" in details["exception_type"]
    assert details["traceback"] and details["exception_message"]


async def test_rejected_graph_is_prompt_failed_with_node_errors(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    graph = image_graph()
    del graph["9"]["inputs"]["images"]
    assert (
        await post(server, {"prompt": graph, "id": "hook-rejected", "webhook_v2": receiver.url()})
    ).status_code == 202
    payload = verified((await receiver.wait_for(1))[0])
    assert payload["type"] == "prompt.failed"
    error = payload["error_detail"]
    assert error["type"] == "workflow_rejected"
    assert error["details"]["node_errors"]["9"]["errors"][0]["type"] == "required_input_missing"


async def test_receiver_failing_twice_gets_exactly_one_accepted_delivery(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    receiver.script("/flaky", Reply(500), Reply(503, headers={"Retry-After": "0"}), Reply(200))
    body = {"prompt": image_graph(0x00AA00), "id": "hook-flaky", "webhook_v2": receiver.url("/flaky")}
    assert (await post(server, body)).status_code == 202
    attempts = await receiver.wait_for(3, path="/flaky")
    assert [attempt.answered_with for attempt in attempts] == [500, 503, 200]
    payloads = [verified(attempt) for attempt in attempts]  # every retry carries a fresh, valid signature
    assert {payload["id"] for payload in payloads} == {"hook-flaky"}
    assert {attempt.headers["webhook-id"] for attempt in attempts} == {"hook-flaky"}
    await asyncio.sleep(0.5)
    assert len(receiver.received("/flaky")) == 3
    assert "webhook prompt.complete for job hook-flaky delivered" in server.logs()


async def test_a_hanging_receiver_does_not_delay_another_jobs_webhook(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    receiver.script("/hangs", Reply(hang=True))
    first = {"prompt": image_graph(0x111111), "id": "hook-hung", "webhook_v2": receiver.url("/hangs")}
    assert (await post(server, first)).status_code == 202
    [hung] = await receiver.wait_for(1, path="/hangs")
    second = {"prompt": image_graph(0x222222), "id": "hook-after-hung", "webhook_v2": receiver.url("/quick")}
    assert (await post(server, second)).status_code == 202
    [quick] = await receiver.wait_for(1, path="/quick")
    assert verified(quick)["id"] == "hook-after-hung"
    assert hung.answered_with is None and len(receiver.received("/hangs")) == 1  # still hanging meanwhile


async def test_v1_webhook_posts_each_output_unsigned_and_warns(
    server: ServerProcess, receiver: WebhookReceiver
) -> None:
    graph = image_graph(0xAA0000, prefix="first")
    graph["10"] = {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x0000AA}}
    graph["11"] = {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "second"}}
    assert (await post(server, {"prompt": graph, "id": "hook-v1", "webhook": receiver.url("/v1")})).status_code == 202
    requests = await receiver.wait_for(2, path="/v1")
    bodies = sorted((request.json() for request in requests), key=lambda body: body["filename"])
    assert [body["event"] for body in bodies] == ["output.complete", "output.complete"]
    assert [body["filename"] for body in bodies] == ["hook-v1_first_00001_.png", "hook-v1_second_00001_.png"]
    assert decode_image(bodies[0]["image"]).getpixel((1, 1)) == rgb(0xAA0000)
    assert decode_image(bodies[1]["image"]).getpixel((1, 1)) == rgb(0x0000AA)
    assert all(body["id"] == "hook-v1" and "total_time" in body["stats"] for body in bodies)
    assert all("webhook-signature" not in request.headers for request in requests)
    assert "job hook-v1: `webhook` is deprecated" in server.logs()


async def test_v1_webhook_gets_prompt_failed(server: ServerProcess, receiver: WebhookReceiver) -> None:
    graph = image_graph()
    del graph["9"]["inputs"]["images"]
    assert (
        await post(server, {"prompt": graph, "id": "hook-v1-bad", "webhook": receiver.url("/v1")})
    ).status_code == 202
    [request] = await receiver.wait_for(1, path="/v1")
    body = request.json()
    assert (body["event"], body["id"]) == ("prompt.failed", "hook-v1-bad")
    assert body["error_detail"]["type"] == "workflow_rejected"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"webhook_v2": "ftp://example.com/hook"}, "webhook_v2"),
        ({"webhook": "not a url"}, "webhook"),
        ({"async": "yes"}, "async"),
    ],
)
async def test_unusable_async_fields_are_400_naming_the_field(
    server: ServerProcess, extra: dict[str, Any], field: str
) -> None:
    response = await post(server, {"prompt": image_graph(), **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field


async def test_refusals_come_before_the_202(server: ServerProcess, receiver: WebhookReceiver) -> None:
    slow = {"prompt": sampler_graph(100, seed=4), "id": "hook-dup", "webhook_v2": receiver.url()}
    assert (await post(server, slow)).status_code == 202
    again = await post(server, slow)
    assert again.status_code == 400 and again.json()["error"]["field"] == "id"
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.post(server.url("/interrupt"), json={"id": "hook-dup"})).status_code == 200
    payload = verified((await receiver.wait_for(1))[0])
    assert (payload["type"], payload["error_detail"]["type"]) == ("prompt.failed", "cancelled")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc")
@pytest.mark.simulator_only(reason="a 2048x2048 KSampler output: instant on the simulator, far too slow on a CPU")
async def test_a_big_output_is_streamed_into_the_webhook(server: ServerProcess) -> None:
    assert server.proc is not None
    before = peak_rss_bytes(server.proc.pid)
    async with WebhookReceiver(max_body_bytes=64 * 1024 * 1024) as big_receiver:
        body = {"prompt": sampler_graph(1, size=2048), "id": "hook-big", "webhook_v2": big_receiver.url()}
        assert (await post(server, body)).status_code == 202
        payload = verified((await big_receiver.wait_for(1, timeout_s=60))[0])
    size_bytes = payload["outputs"][0]["size_bytes"]
    assert size_bytes > 10 * 1024 * 1024
    assert len(base64.b64decode(payload["images"][0])) == size_bytes
    growth = peak_rss_bytes(server.proc.pid) - before
    # The signed body (4/3 of the output, as base64) was never held whole: it is read from disk once to sign it,
    # once to send it.
    assert growth < size_bytes, f"peak RSS grew by {growth} bytes for a {size_bytes}-byte output"


@pytest.mark.parametrize("flag", ["top-level", "upload-block"])
async def test_async_with_only_an_upload_target_uploads_in_the_background(
    server: ServerProcess, receiver: WebhookReceiver, flag: str
) -> None:
    upload: dict[str, Any] = {"url_prefix": receiver.url("/bucket")}
    body: dict[str, Any] = {"prompt": image_graph(0x0A0B0C), "id": f"async-upload-{flag}", "http_upload": upload}
    if flag == "top-level":
        body["async"] = True
    else:
        upload["async"] = True
    response = await post(server, body)
    assert response.status_code == 202, response.text
    [put] = await receiver.wait_for(1)
    assert put.method == "PUT" and put.path.startswith("/bucket/")
    assert put.path.endswith(f"async-upload-{flag}_test_00001_.png")
    assert decode_image(base64.b64encode(put.body).decode()).getpixel((0, 0)) == rgb(0x0A0B0C)


async def test_no_files_left_behind(server: ServerProcess) -> None:
    """Runs after the jobs above: ComfyUI's outputs and staged inputs are gone, and the only work files are the
    outputs the job records keep."""
    await wait_until(lambda: only_kept_outputs_left(server), timeout_s=10)


# ---- servers of their own ----------------------------------------------------------------------------------------


async def test_an_unusable_webhook_secret_stops_start_up_naming_it(tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"WEBHOOK_SECRET": "not base64 at all!"}).start()
    code = await asyncio.to_thread(server.wait_exit, 30)
    assert code == 2
    assert "WEBHOOK_SECRET" in server.logs()
    assert "not base64 at all!" not in server.logs()


async def test_shutdown_cancels_an_async_job_after_the_grace_period_and_reports_it(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    server = make_server(tmp_path, env={**WEBHOOK_ENV, "SHUTDOWN_GRACE_S": "0.5"}).start()
    try:
        await asyncio.to_thread(server.wait_ready)
        body = {"prompt": sampler_graph(500, seed=2), "id": "hook-shutdown", "webhook_v2": receiver.url()}
        assert (await post(server, body)).status_code == 202
        await until_in_comfy_queue(server.comfy_port, "hook-shutdown")
        server.signal(signal.SIGTERM)
        payload = verified((await receiver.wait_for(1, timeout_s=20))[0])
        assert (payload["type"], payload["id"]) == ("prompt.failed", "hook-shutdown")
        assert payload["error_detail"]["type"] == "cancelled"
        assert await asyncio.to_thread(server.wait_exit, 30) == 0
    finally:
        await asyncio.to_thread(server.stop)
