"""JobEventChannel and sse_stream: frames parsed back from the generator's bytes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.delivery.sse import HEARTBEAT, JobEventChannel, sse_stream
from comfyui_api.errors import ExecutionFailed
from comfyui_api.jobs.model import (
    JobCompleted,
    JobEvent,
    JobFailed,
    JobQueued,
    JobResult,
    JobStarted,
    NodeExecuting,
    OutputFile,
    OutputReady,
    PreviewProduced,
    ProgressUpdated,
    Stats,
)

JOB = "job-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_output(filename: str = "out_00001_.png") -> OutputFile:
    return OutputFile(
        node_id="9",
        kind="image",
        filename=filename,
        subfolder="",
        comfy_type="output",
        content_type="image/png",
        size_bytes=1234,
        path=Path("/tmp/never-shown") / filename,
    )


def make_result() -> JobResult:
    return JobResult(id=JOB, graph={"9": {"class_type": "SaveImage"}}, outputs=[make_output()], texts=[], stats=Stats())


def progress(percent: float, value: float = 1, node: str = "3") -> ProgressUpdated:
    return ProgressUpdated(JOB, node_id=node, value=value, max=20, percent=percent)


def parse(raw: bytes) -> list[tuple[str, Any]]:
    """SSE bytes -> [(event name, parsed data)], with ("comment", text) for comment lines."""
    frames = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        event, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                frames.append(("comment", line[1:].strip()))
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        if event is not None:
            frames.append((event, json.loads("\n".join(data))))
    return frames


def serialize(result: JobResult) -> dict[str, Any]:
    return {"id": result.id, "filenames": [o.filename for o in result.outputs], "status": "ok"}


async def collect(stream: AsyncIterator[bytes]) -> list[tuple[str, Any]]:
    return parse(b"".join([chunk async for chunk in stream]))


async def test_a_whole_job_streams_in_order_and_ends_with_one_complete() -> None:
    channel = JobEventChannel(JOB, max_previews_per_s=0.5, clock=FakeClock())
    events: list[JobEvent] = [
        JobQueued(JOB, position=2),
        JobQueued(JOB, position=0),
        JobStarted(JOB),
        NodeExecuting(JOB, node_id="3", class_type="KSampler"),
        progress(10.0, 1),
        PreviewProduced(JOB, node_id="3", content_type="image/jpeg", data=b"\xff\xd8jpeg"),
        progress(55.5, 2),
        OutputReady(JOB, output=make_output()),
        JobCompleted(JOB, result=make_result()),
        progress(99.0, 3),  # after the terminal event: ignored
        JobFailed(JOB, error=ExecutionFailed("late", node_id="3", node_type="X", exception_type="E")),
    ]
    for event in events:
        channel(event)
    frames = await collect(sse_stream(channel, heartbeat_s=5.0, serialize_complete=serialize))

    assert [name for name, _ in frames] == [
        "queued", "queued", "started", "executing", "progress", "preview", "progress", "output", "complete",
    ]  # fmt: skip
    assert frames[1][1] == {"id": JOB, "position": 0}
    assert frames[3][1] == {"id": JOB, "node": "3", "class_type": "KSampler"}
    assert frames[4][1] == {"id": JOB, "node": "3", "value": 1, "max": 20, "percent": 10.0}
    assert [data["percent"] for name, data in frames if name == "progress"] == [10.0, 55.5]
    assert frames[5][1] == {
        "id": JOB,
        "node": "3",
        "content_type": "image/jpeg",
        "image": base64.b64encode(b"\xff\xd8jpeg").decode(),
    }
    output = frames[7][1]
    assert output["filename"] == "out_00001_.png" and output["size_bytes"] == 1234 and output["type"] == "output"
    assert "path" not in output and "never-shown" not in json.dumps(output)
    assert frames[8][1] == {"id": JOB, "filenames": ["out_00001_.png"], "status": "ok"}
    assert channel.closed


async def test_failed_carries_the_structured_error() -> None:
    channel = JobEventChannel(JOB)
    error = ExecutionFailed("boom", node_id="3", node_type="KSampler", exception_type="RuntimeError")
    channel(JobStarted(JOB))
    channel(JobFailed(JOB, error=error))
    channel(JobCompleted(JOB, result=make_result()))  # a second terminal event never reaches the stream
    frames = await collect(sse_stream(channel, heartbeat_s=5.0, serialize_complete=serialize))
    assert [name for name, _ in frames] == ["started", "failed"]
    assert frames[1][1] == {"id": JOB, "error": error.to_dict()}
    assert frames[1][1]["error"]["details"]["node_type"] == "KSampler"


async def test_async_serializer_and_a_failing_one_still_end_with_one_terminal_frame() -> None:
    async def slow_serialize(result: JobResult) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": result.id}

    def broken(result: JobResult) -> dict[str, Any]:
        raise RuntimeError("cannot")

    for serializer, expected in ((slow_serialize, "complete"), (broken, "failed")):
        channel = JobEventChannel(JOB)
        channel(JobCompleted(JOB, result=make_result()))
        frames = await collect(sse_stream(channel, heartbeat_s=5.0, serialize_complete=serializer))
        assert [name for name, _ in frames] == [expected]
    assert frames[0][1]["error"]["type"] == "internal_error"


async def test_heartbeat_comments_fill_silence() -> None:
    channel = JobEventChannel(JOB)
    stream = sse_stream(channel, heartbeat_s=0.01, serialize_complete=serialize)
    assert await anext(stream) == HEARTBEAT
    assert await anext(stream) == HEARTBEAT
    channel(JobStarted(JOB))
    assert parse(await anext(stream)) == [("started", {"id": JOB})]
    channel(JobCompleted(JOB, result=make_result()))
    assert parse(await anext(stream))[0][0] == "complete"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert parse(HEARTBEAT) == [("comment", "keep-alive")]


async def test_closing_the_stream_never_raises_into_the_producer() -> None:
    channel = JobEventChannel(JOB)
    stream = sse_stream(channel, heartbeat_s=5.0, serialize_complete=serialize)
    channel(JobStarted(JOB))
    await anext(stream)
    await stream.aclose()  # the client went away
    assert channel.closed
    channel(progress(50.0))  # the job goes on emitting: silently ignored
    channel(JobCompleted(JOB, result=make_result()))
    assert await channel.next_event(0.01) is None


async def test_cancelling_a_waiting_consumer_closes_the_channel_only() -> None:
    channel = JobEventChannel(JOB)
    stream = sse_stream(channel, heartbeat_s=30.0, serialize_complete=serialize)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    assert channel.closed
    channel(JobStarted(JOB))  # no exception


async def test_previews_are_throttled_per_second() -> None:
    clock = FakeClock()
    channel = JobEventChannel(JOB, max_previews_per_s=2.0, clock=clock)
    for step in range(10):  # ten previews within 0.9 s
        clock.now = 100.0 + step * 0.1
        channel(PreviewProduced(JOB, node_id="3", content_type="image/png", data=bytes([step])))
    kept = [e for e in await _drain(channel) if isinstance(e, PreviewProduced)]
    assert [e.data for e in kept] == [b"\x00", b"\x05"]  # one per half second

    off = JobEventChannel(JOB, max_previews_per_s=0, clock=clock)
    off(PreviewProduced(JOB, node_id="3", content_type="image/png", data=b"x"))
    assert await _drain(off) == []


async def test_full_buffer_coalesces_progress_and_never_drops_milestones() -> None:
    channel = JobEventChannel(JOB, max_events=4, max_previews_per_s=1000.0, clock=itertools.count(1.0).__next__)
    channel(JobStarted(JOB))
    for step in range(50):
        channel(progress(float(step), value=step))
    channel(OutputReady(JOB, output=make_output("a.png")))
    channel(OutputReady(JOB, output=make_output("b.png")))
    channel(OutputReady(JOB, output=make_output("c.png")))
    channel(JobCompleted(JOB, result=make_result()))
    events = await _drain(channel)
    names = [type(e).__name__ for e in events]
    assert names[0] == "JobStarted"
    assert names[-1] == "JobCompleted"
    assert [e.output.filename for e in events if isinstance(e, OutputReady)] == ["a.png", "b.png", "c.png"]
    percents = [e.percent for e in events if isinstance(e, ProgressUpdated)]
    assert percents == sorted(percents)
    assert channel.dropped_events > 0


async def test_full_buffer_drops_previews_before_progress_and_executing() -> None:
    channel = JobEventChannel(JOB, max_events=3, max_previews_per_s=1000.0, clock=itertools.count(1.0).__next__)
    channel(PreviewProduced(JOB, node_id="3", content_type="image/png", data=b"old"))
    channel(NodeExecuting(JOB, node_id="3", class_type="KSampler"))
    channel(progress(10.0))
    channel(NodeExecuting(JOB, node_id="4", class_type="VAEDecode"))  # evicts the preview
    channel(PreviewProduced(JOB, node_id="3", content_type="image/png", data=b"new"))  # dropped: nothing cheaper
    events = await _drain(channel)
    assert [type(e).__name__ for e in events] == ["NodeExecuting", "ProgressUpdated", "NodeExecuting"]
    assert channel.dropped_events == 2


async def test_events_of_other_jobs_are_ignored() -> None:
    channel = JobEventChannel(JOB)
    channel(JobStarted("someone-else"))
    assert await _drain(channel) == []


async def _drain(channel: JobEventChannel) -> list[JobEvent]:
    out = []
    while (event := await channel.next_event(0)) is not None:
        out.append(event)
    return out
