"""POST /prompt with `Accept: text/event-stream` against the real server process, the simulator (slow KSampler steps)
or, with COMFYUI_TEST_DIR, a real ComfyUI as its ComfyUI, with latent2rgb previews: event order, monotonic percent,
previews, outputs, exactly one terminal event, heartbeats, and what a disconnect does (nothing, unless
cancel_on_disconnect). Also measures how long a ComfyUI progress frame takes to become an SSE event, with a tapping
proxy between the server and ComfyUI."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.integration.server import (
    TARGET,
    ComfyDirs,
    ServerProcess,
    comfy_queue,
    decode_image,
    free_port,
    image_graph,
    only_kept_outputs_left,
    rgb,
    running_server,
    sampler_graph,
    start_server,
    until_in_comfy_queue,
    wait_until,
)

PREVIEWS = ("--preview-method", "latent2rgb", "--preview-size", "64")
STEP_S = 0.05
# Sampler steps of a job streamed to its end: a real ComfyUI on a CPU takes a second or more a step.
LIFE_STEPS = TARGET.pick(simulator=24, real=4)
GONE_STEPS = TARGET.pick(simulator=30, real=3)
LATENCY_STEPS = TARGET.pick(simulator=40, real=4)
JOB_TAKES_S = TARGET.pick(simulator=20.0, real=240.0)
SYNC_BODY_KEYS = {"id", "prompt", "images", "filenames", "outputs", "texts", "stats"}
EVENT_STREAM = {"accept": "text/event-stream"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(
        tmp_path_factory.mktemp("sse"),
        step_seconds=STEP_S,
        comfy_extra=PREVIEWS,
        env={"SSE_HEARTBEAT_S": "0.2"},
    )


@dataclass(frozen=True)
class Frame:
    event: str  # "comment" for a heartbeat
    data: Any
    at: float  # time.monotonic() on arrival


async def frames_of(response: httpx.Response) -> AsyncIterator[Frame]:
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            now = time.monotonic()
            if block.startswith(":"):
                yield Frame("comment", block[1:].strip(), now)
                continue
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            yield Frame(fields["event"], json.loads(fields["data"]), now)


async def stream_job(server: ServerProcess, body: dict[str, Any], *, timeout_s: float = 3 * JOB_TAKES_S) -> list[Frame]:
    """Every frame of one streamed job, up to and including its terminal event."""
    frames: list[Frame] = []
    async with (
        httpx.AsyncClient(timeout=timeout_s) as client,
        client.stream("POST", server.url("/prompt"), json=body, headers=EVENT_STREAM) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        async for frame in frames_of(response):
            frames.append(frame)
    return frames


def named(frames: list[Frame], event: str) -> list[Any]:
    return [frame.data for frame in frames if frame.event == event]


async def test_a_slow_sampler_streams_its_whole_life(server: ServerProcess) -> None:
    frames = await stream_job(server, {"prompt": sampler_graph(LIFE_STEPS, seed=3), "id": "sse-life"})
    events = [frame.event for frame in frames if frame.event != "comment"]
    assert events[0] == "queued" and events[-1] == "complete"
    assert [event for event in events if event in ("complete", "failed")] == ["complete"]
    assert events.index("started") < events.index("executing") < events.index("progress")
    assert max(i for i, event in enumerate(events) if event == "preview") < events.index("output")
    assert named(frames, "queued") == [{"id": "sse-life", "position": 0}]

    percents = [progress["percent"] for progress in named(frames, "progress")]
    assert percents == sorted(percents) and percents[0] >= 0 and percents[-1] == 100
    steps = [p for p in named(frames, "progress") if p["node"] == "3" and p["max"] == LIFE_STEPS]
    assert [p["value"] for p in steps] == list(range(1, LIFE_STEPS + 1))  # every sampler step, in order
    assert {e["class_type"] for e in named(frames, "executing")} >= {"KSampler", "SaveImage"}

    previews = named(frames, "preview")
    # Throttled to 2 a second: far fewer previews than the simulator's quick steps; at most one a real CPU step.
    assert 1 <= len(previews) <= TARGET.pick(simulator=LIFE_STEPS - 1, real=LIFE_STEPS)
    picture = Image.open(io.BytesIO(base64.b64decode(previews[0]["image"])))
    assert picture.format in ("JPEG", "PNG") and previews[0]["content_type"] in ("image/jpeg", "image/png")
    assert previews[0]["node"] == "3"

    [output] = named(frames, "output")
    assert (output["node"], output["kind"], output["filename"]) == ("9", "image", "sse-life_sampled_00001_.png")
    complete = named(frames, "complete")[0]
    assert set(complete) == SYNC_BODY_KEYS
    assert complete["filenames"] == [output["filename"]]
    assert len(base64.b64decode(complete["images"][0])) == output["size_bytes"]
    assert set(complete["stats"]["comfy_execution"]["nodes"]) >= {"3", "9"}


async def test_a_quick_job_completes_with_the_sync_body(server: ServerProcess) -> None:
    frames = await stream_job(server, {"prompt": image_graph(0x44AA22), "id": "sse-quick"})
    complete = named(frames, "complete")
    assert len(complete) == 1 and frames[-1].event == "complete"
    assert decode_image(complete[0]["images"][0]).getpixel((0, 0)) == rgb(0x44AA22)
    async with httpx.AsyncClient(timeout=30) as client:
        sync = (await client.post(server.url("/prompt"), json={"prompt": image_graph(0x44AA22)})).json()
    assert set(complete[0]["stats"]) == set(sync["stats"])


async def test_a_rejected_graph_ends_with_one_failed_event(server: ServerProcess) -> None:
    graph = image_graph()
    del graph["9"]["inputs"]["images"]
    frames = await stream_job(server, {"prompt": graph, "id": "sse-rejected"})
    terminal = [frame for frame in frames if frame.event in ("complete", "failed")]
    assert [frame.event for frame in terminal] == ["failed"] and frames[-1] is terminal[0]
    error = terminal[0].data["error"]
    assert error["type"] == "workflow_rejected"
    assert error["details"]["node_errors"]["9"]["errors"][0]["type"] == "required_input_missing"


async def test_a_queued_job_shows_its_position_and_heartbeats(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        blocker = asyncio.create_task(
            client.post(server.url("/prompt"), json={"prompt": sampler_graph(400, seed=5), "id": "sse-blocker"})
        )
        await until_in_comfy_queue(server.comfy_port, "sse-blocker")
        seen: list[Frame] = []
        body = {"prompt": image_graph(0x0000FF), "id": "sse-waiting"}
        async with client.stream("POST", server.url("/prompt"), json=body, headers=EVENT_STREAM) as response:
            async for frame in frames_of(response):
                seen.append(frame)
                if frame.event == "queued":
                    await asyncio.sleep(0.7)  # quiet while the blocker runs: heartbeats keep the stream alive
                    assert (await client.post(server.url("/interrupt"), json={"id": "sse-blocker"})).status_code == 200
        assert (await blocker).status_code == 409
    assert named(seen, "queued")[0]["position"] >= 1
    first_started = next(i for i, frame in enumerate(seen) if frame.event == "started")
    assert any(frame.event == "comment" for frame in seen[:first_started])
    assert seen[-1].event == "complete"


async def read_until_progress(server: ServerProcess, body: dict[str, Any]) -> None:
    """Open the job's stream, read until its first sampler step, then go away."""
    async with (
        httpx.AsyncClient(timeout=30) as client,
        client.stream("POST", server.url("/prompt"), json=body, headers=EVENT_STREAM) as response,
    ):
        async for frame in frames_of(response):
            if frame.event == "progress" and frame.data["node"] == "3":
                break


async def test_a_client_that_goes_away_leaves_the_job_running(server: ServerProcess) -> None:
    await read_until_progress(server, {"prompt": sampler_graph(GONE_STEPS, seed=6), "id": "sse-gone"})

    async def finished() -> bool:
        return "job sse-gone completed" in server.logs()

    await wait_until(finished, timeout_s=JOB_TAKES_S)
    assert "job sse-gone: the event-stream client went away; the job runs on" in server.logs()

    assert not server.dirs.files(), "ComfyUI's copies were taken"
    async with httpx.AsyncClient(timeout=10) as client:  # the record keeps the result nobody took
        record = (await client.get(server.url("/jobs/sse-gone"))).json()
        assert record["status"] == "completed"
        assert (await client.get(server.url(record["outputs"][0]["url"]))).status_code == 200


async def test_cancel_on_disconnect_cancels_the_job(server: ServerProcess) -> None:
    body = {"prompt": sampler_graph(400, seed=7), "id": "sse-cancel", "cancel_on_disconnect": True}
    await read_until_progress(server, body)

    async def cancelled() -> bool:
        return "job sse-cancel cancelled" in server.logs()

    await wait_until(cancelled, timeout_s=20)
    assert (await comfy_queue(server.comfy_port)) == {"queue_running": [], "queue_pending": []}


@pytest.mark.parametrize(
    ("accept", "streamed"),
    [("text/event-stream", True), ("application/json, text/event-stream;q=0.5", True),
     ("text/event-stream;q=0", False), ("application/json", False)],
)  # fmt: skip
async def test_the_accept_header_picks_the_answer(server: ServerProcess, accept: str, streamed: bool) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(server.url("/prompt"), json={"prompt": image_graph()}, headers={"accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream" if streamed else "application/json")


async def test_a_refused_stream_is_a_plain_error(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            server.url("/prompt"), json={"prompt": image_graph(), "id": "bad id!"}, headers=EVENT_STREAM
        )
    assert response.status_code == 400 and response.json()["error"]["field"] == "id"


async def test_no_files_left_behind(server: ServerProcess) -> None:
    await wait_until(lambda: only_kept_outputs_left(server), timeout_s=10)


# ---- latency: ComfyUI's progress frame -> our SSE progress event --------------------------------------------------


class ProgressTap:
    """A TCP proxy in front of ComfyUI that notes when each websocket `progress` frame passes on its way to the
    server: {(node, value): time.monotonic()}. Frames from ComfyUI to a client are unmasked and uncompressed (the
    server asks for no compression), so they can be read straight off the byte stream."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = 0
        self.seen: dict[tuple[str, int], float] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> ProgressTap:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        first = await reader.read(64 * 1024)
        up_writer.write(first)
        is_ws = first.startswith(b"GET /ws")
        for source, sink, tap in ((reader, up_writer, False), (up_reader, writer, is_ws)):
            task = asyncio.create_task(self._pipe(source, sink, tap))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: bool) -> None:
        buffer, upgraded = b"", False
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(64 * 1024):
                if tap:
                    buffer += chunk
                    if not upgraded and b"\r\n\r\n" in buffer:
                        buffer, upgraded = buffer.split(b"\r\n\r\n", 1)[1], True
                    if upgraded:
                        buffer = self._note_frames(buffer, time.monotonic())
                writer.write(chunk)
                await writer.drain()
        writer.close()

    def _note_frames(self, buffer: bytes, now: float) -> bytes:
        while len(buffer) >= 2:
            length, header = buffer[1] & 0x7F, 2
            if length == 126:
                length, header = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                length, header = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < header + length:
                break
            payload, buffer = buffer[header : header + length], buffer[header + length :]
            if payload.startswith(b'{"type": "progress"'):
                data = json.loads(payload)["data"]
                self.seen.setdefault((str(data["node"]), int(data["value"])), now)
        return buffer


@pytest.fixture
async def tapped(tmp_path: Path) -> AsyncIterator[tuple[ServerProcess, ProgressTap]]:
    dirs = ComfyDirs(tmp_path / "comfy")
    dirs.create()
    comfy_port = free_port()
    command = TARGET.cmd(comfy_port, dirs, step_seconds=STEP_S, extra=PREVIEWS)
    comfy = await asyncio.to_thread(
        subprocess.Popen, command, cwd=TARGET.home(dirs), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with ProgressTap(comfy_port) as tap:
            env = {"COMFYUI_URL": f"http://127.0.0.1:{tap.port}", "INPUT_DIR": str(dirs.input)}
            server = await asyncio.to_thread(start_server, tmp_path / "server", env=env)
            try:
                yield server, tap
            finally:
                await asyncio.to_thread(server.stop)
    finally:
        comfy.terminate()
        await asyncio.to_thread(comfy.wait, 30)


@pytest.mark.slow
async def test_progress_event_latency(tapped: tuple[ServerProcess, ProgressTap]) -> None:
    server, tap = tapped
    latencies_ms: list[float] = []
    for run in range(3):
        body = {"prompt": sampler_graph(LATENCY_STEPS, seed=10 + run), "id": f"sse-latency-{run}"}
        frames = await stream_job(server, body)
        for frame in frames:
            if frame.event == "progress" and frame.data["node"] == "3" and frame.data["max"] == LATENCY_STEPS:
                passed_at = tap.seen.get(("3", int(frame.data["value"])))
                assert passed_at is not None, frame.data
                latencies_ms.append((frame.at - passed_at) * 1000.0)
        tap.seen.clear()
    assert len(latencies_ms) == 3 * LATENCY_STEPS
    median_ms = statistics.median(latencies_ms)
    p95_ms = statistics.quantiles(latencies_ms, n=20)[18]
    print(f"\nSSE progress latency over {len(latencies_ms)} frames: median {median_ms:.1f} ms, p95 {p95_ms:.1f} ms, "
          f"max {max(latencies_ms):.1f} ms")  # fmt: skip
    assert median_ms < 250  # generous: on an idle machine it is a few milliseconds
