"""The job API against the real server process (simulator as ComfyUI): async jobs polled to completion and their
outputs downloaded, event streams joined mid-job and after the end, Last-Event-ID resumption, cancelling queued and
running jobs, a webhook redelivered after every retry failed, metadata, listing, and record eviction."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.server import (
    ServerProcess,
    image_graph,
    make_server,
    rgb,
    running_server,
    sampler_graph,
    wait_until,
)
from tests.servers.webhook_receiver import Reply, WebhookReceiver

pytestmark = pytest.mark.simulator_only  # timings assume the simulator's sampler steps
STEP_S = 0.05


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"WEBHOOK_BACKOFF_BASE_S": "0.05", "PROMPT_WEBHOOK_RETRIES": "2", "MAX_QUEUE_DEPTH": "50"}
    yield from running_server(tmp_path_factory.mktemp("jobapi"), env=env, step_seconds=STEP_S)


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url(""), timeout=30) as http:
        yield http


async def job(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def until_status(client: httpx.AsyncClient, job_id: str, *statuses: str, timeout_s: float = 30) -> dict:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await job(client, job_id))
        return found["status"] in statuses

    await wait_until(reached, timeout_s=timeout_s)
    return found


async def read_events(response: httpx.Response, stop_after: int | None = None) -> list[tuple[int, str, Any]]:
    """(id, event, data) of each frame, until the stream ends (or `stop_after` frames)."""
    frames: list[tuple[int, str, Any]] = []
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith(":"):
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            frames.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
            if stop_after is not None and len(frames) >= stop_after:
                return frames
    return frames


async def stream(client: httpx.AsyncClient, job_id: str, **headers: str) -> list[tuple[int, str, Any]]:
    async with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return await read_events(response)


async def test_async_job_is_polled_to_completion_and_its_outputs_downloaded(client: httpx.AsyncClient) -> None:
    body = {"prompt": image_graph(0x3366CC), "id": "poll-me", "async": True, "metadata": {"user": "u-1"}}
    accepted = await client.post("/prompt", json=body)
    assert accepted.status_code == 202, accepted.text
    assert (accepted.json()["status"], accepted.json()["job"]) == ("ok", "/jobs/poll-me")
    record = await until_status(client, "poll-me", "completed")
    assert record["metadata"] == {"user": "u-1"} and record["error"] is None
    assert record["progress"]["percent"] == 100 and record["finished_at"] >= record["created_at"]
    [output] = record["outputs"]
    assert (output["kind"], output["content_type"], output["url"]) == ("image", "image/png", "/jobs/poll-me/outputs/0")
    assert record["stats"]["total_time"] > 0
    download = await client.get(output["url"])
    assert download.status_code == 200 and download.headers["content-type"] == "image/png"
    assert len(download.content) == output["size_bytes"]
    assert Image.open(io.BytesIO(download.content)).convert("RGB").getpixel((2, 2)) == rgb(0x3366CC)
    missing = await client.get("/jobs/poll-me/outputs/1")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "index"
    unknown = await client.get("/jobs/nobody")
    assert unknown.status_code == 404 and "'nobody'" in unknown.json()["error"]["message"]


async def test_event_streams_joined_mid_job_and_after_it_tell_the_same_whole_story(client: httpx.AsyncClient) -> None:
    body = {"prompt": sampler_graph(40, seed=7), "id": "story", "async": True}
    assert (await client.post("/prompt", json=body)).status_code == 202
    await until_status(client, "story", "running")
    during = await stream(client, "story")
    after = await stream(client, "story")
    assert [(seq, name) for seq, name, _ in during] == [(seq, name) for seq, name, _ in after]
    names = [name for _, name, _ in after]
    assert names[0] == "started" and names[-1] == "complete" and names.count("complete") == 1
    assert "progress" in names and "output" in names
    seqs = [seq for seq, _, _ in after]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    percents = [data["percent"] for _, name, data in after if name == "progress"]
    assert percents == sorted(percents)


async def test_last_event_id_resumes_with_nothing_lost_or_repeated(client: httpx.AsyncClient) -> None:
    body = {"prompt": sampler_graph(30, seed=8), "id": "resume", "async": True}
    assert (await client.post("/prompt", json=body)).status_code == 202
    async with client.stream("GET", "/jobs/resume/events") as response:
        first = await read_events(response, stop_after=3)  # then the connection drops
    rest = await stream(client, "resume", **{"Last-Event-ID": str(first[-1][0])})
    whole = await stream(client, "resume")
    assert [seq for seq, _, _ in first + rest] == [seq for seq, _, _ in whole]
    assert rest[-1][1] == "complete"
    bad = await client.get("/jobs/resume/events", headers={"Last-Event-ID": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "Last-Event-ID"


async def test_cancel_a_queued_and_a_running_job(client: httpx.AsyncClient) -> None:
    for job_id, seed in (("cancel-running", 1), ("cancel-queued", 2)):
        body = {"prompt": sampler_graph(400, seed=seed), "id": job_id, "async": True}
        assert (await client.post("/prompt", json=body)).status_code == 202
    await until_status(client, "cancel-running", "running")
    assert (await job(client, "cancel-queued"))["status"] == "queued"
    for job_id in ("cancel-queued", "cancel-running"):
        response = await client.post(f"/jobs/{job_id}/cancel")
        assert response.json() == {"id": job_id, "cancelled": True}
        record = await until_status(client, job_id, "cancelled", "failed")
        assert record["status"] == "cancelled" and record["error"]["type"] == "cancelled"
        assert (await client.post(f"/jobs/{job_id}/cancel")).json() == {"id": job_id, "cancelled": False}
    assert (await client.post("/jobs/nobody/cancel")).json() == {"id": "nobody", "cancelled": False}
    events = await stream(client, "cancel-running")
    assert events[-1][1] == "failed" and events[-1][2]["error"]["type"] == "cancelled"


async def test_a_webhook_down_past_every_retry_is_redelivered(client: httpx.AsyncClient) -> None:
    async with WebhookReceiver() as receiver:
        receiver.script("/down", Reply(500), Reply(503))  # both attempts fail; later ones get 200
        body = {"prompt": image_graph(), "id": "redeliver-me", "webhook_v2": receiver.url("/down"),
                "metadata": {"batch": 3}}  # fmt: skip
        assert (await client.post("/prompt", json=body)).status_code == 202

        async def given_up() -> bool:
            webhook = (await job(client, "redeliver-me"))["webhook"]
            return bool(webhook["state"] == "failed")

        await wait_until(given_up, timeout_s=20)
        webhook = (await job(client, "redeliver-me"))["webhook"]
        assert webhook["attempts"] == 2 and "503" in (webhook["last_error"] or "")
        again = await client.post("/jobs/redeliver-me/redeliver")
        assert again.status_code == 202, again.text
        [_, _, delivered] = await receiver.wait_for(3, path="/down")
        payload = delivered.json()
        assert (payload["type"], payload["id"], payload["metadata"]) == (
            "prompt.complete",
            "redeliver-me",
            {"batch": 3},
        )
        assert len(payload["images"]) == 1 and payload["images"][0]

        async def delivered_now() -> bool:
            return bool((await job(client, "redeliver-me"))["webhook"]["state"] == "delivered")

        await wait_until(delivered_now, timeout_s=10)
    no_hook = await client.post("/jobs/poll-me/redeliver")
    assert no_hook.status_code == 400 and no_hook.json()["error"]["field"] == "id"


async def test_the_job_list_is_newest_first_with_filters_and_cursors(client: httpx.AsyncClient) -> None:
    for index in range(3):
        assert (
            await client.post("/prompt", json={"prompt": image_graph(), "id": f"listed-{index}"})
        ).status_code == 200
    page = (await client.get("/jobs", params={"limit": 2})).json()
    assert [j["id"] for j in page["jobs"]] == ["listed-2", "listed-1"] and page["next_cursor"] == "listed-1"
    following = (await client.get("/jobs", params={"limit": 1, "cursor": page["next_cursor"]})).json()
    assert [j["id"] for j in following["jobs"]] == ["listed-0"]
    completed = (await client.get("/jobs", params={"status": "completed", "limit": 500})).json()["jobs"]
    assert {"listed-0", "listed-1", "listed-2"} <= {j["id"] for j in completed}
    bad = await client.get("/jobs", params={"status": "done"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "status"


async def test_records_are_evicted_by_count(tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"JOB_RECORDS_MAX": "2"}).start()
    try:
        await asyncio.to_thread(server.wait_ready)
        async with httpx.AsyncClient(base_url=server.url(""), timeout=30) as http:
            for index in range(3):
                response = await http.post("/prompt", json={"prompt": image_graph(), "id": f"kept-{index}"})
                assert response.status_code == 200
            assert [j["id"] for j in (await http.get("/jobs")).json()["jobs"]] == ["kept-2", "kept-1"]
            assert (await http.get("/jobs/kept-0")).status_code == 404
    finally:
        await asyncio.to_thread(server.stop)
