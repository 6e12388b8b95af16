"""sse_stream as a Litestar Stream body, served by uvicorn on loopback and read by a real HTTP client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from litestar import Litestar, get
from litestar.response import Stream

from comfyui_api.delivery.sse import SSE_HEADERS, SSE_MEDIA_TYPE, sse_stream
from comfyui_api.jobs.broker import JobEventLog
from comfyui_api.jobs.model import JobCompleted, JobResult, JobStarted, ProgressUpdated, Stats

JOB = "job-sse"


def serialize(result: JobResult) -> dict[str, Any]:
    return {"id": result.id, "status": "ok"}


class Served:
    def __init__(self) -> None:
        self.url = ""
        self.log = JobEventLog(JOB)
        self.stream_ended = asyncio.Event()

    async def stream(self) -> AsyncIterator[bytes]:
        """What a route does to learn that its client went away: it owns the generator and sees it closed."""
        frames = sse_stream(self.log.follow_batches(heartbeat_s=0.05), serialize_complete=serialize)
        try:
            async for frame in frames:
                yield frame
        finally:
            await frames.aclose()
            self.stream_ended.set()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    state = Served()

    @get("/events")
    async def events() -> Stream:
        return Stream(state.stream(), media_type=SSE_MEDIA_TYPE, headers=SSE_HEADERS)

    server = uvicorn.Server(
        uvicorn.Config(Litestar([events]), host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none")
    )
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no started event)
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/events"
    yield state
    server.should_exit = True
    await asyncio.wait_for(task, timeout=10)


async def read_frames(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event or "comment", data) per frame, as they arrive."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith(":"):
                yield "comment", block[1:].strip()
            else:
                fields = dict(line.split(": ", 1) for line in block.split("\n"))
                assert int(fields["id"]) > 0
                yield fields["event"], fields["data"]


async def test_a_client_reads_frames_as_they_happen(served: Served) -> None:
    url, log = served.url, served.log
    seen: list[tuple[str, str]] = []
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        log.publish(JobStarted(JOB))
        async for frame in read_frames(response):
            seen.append(frame)
            if frame[0] == "started":
                log.publish(ProgressUpdated(JOB, node_id="3", value=5, max=10, percent=50.0))
                log.publish(JobCompleted(JOB, result=JobResult(id=JOB, graph={}, outputs=[], texts=[], stats=Stats())))
    events = [name for name, _ in seen if name != "comment"]
    assert events == ["started", "progress", "complete"]
    await asyncio.wait_for(served.stream_ended.wait(), timeout=10)
    assert json.loads(seen[-1][1]) == {"id": JOB, "status": "ok"}


async def test_client_disconnect_closes_the_generator_not_the_job(served: Served) -> None:
    url, log = served.url, served.log
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", url) as response:
        log.publish(JobStarted(JOB))
        async for name, _ in read_frames(response):
            if name == "started":
                break  # the client goes away mid-job
    await asyncio.wait_for(served.stream_ended.wait(), timeout=10)  # the next heartbeat finds the socket closed
    log.publish(ProgressUpdated(JOB, node_id="3", value=9, max=10, percent=90.0))  # the producer carries on
    assert log.last_seq == 2
