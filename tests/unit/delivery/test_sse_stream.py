"""sse_stream over a job's event log: frames (with their ids) parsed back from the generator's bytes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.delivery.sse import HEARTBEAT, sse_stream
from comfyui_api.errors import ExecutionFailed
from comfyui_api.jobs.broker import JobEventLog
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


def parse_with_ids(raw: bytes) -> list[tuple[str, Any, int | None]]:
    """SSE bytes -> [(event name, parsed data, id)], with ("comment", text, None) for comment lines."""
    frames = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        event, data, seq = None, [], None
        for line in block.split("\n"):
            if line.startswith(":"):
                frames.append(("comment", line[1:].strip(), None))
            elif line.startswith("id: "):
                seq = int(line[len("id: ") :])
            elif line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        if event is not None:
            frames.append((event, json.loads("\n".join(data)), seq))
    return frames


def parse(raw: bytes) -> list[tuple[str, Any]]:
    """SSE bytes -> [(event name, parsed data)], with ("comment", text) for comment lines."""
    return [(name, data) for name, data, _ in parse_with_ids(raw)]


def serialize(result: JobResult) -> dict[str, Any]:
    return {"id": result.id, "filenames": [o.filename for o in result.outputs], "status": "ok"}


async def collect(stream: AsyncIterator[bytes]) -> list[tuple[str, Any]]:
    return parse(b"".join([chunk async for chunk in stream]))


def log_of(*events: JobEvent) -> JobEventLog:
    log = JobEventLog(JOB)
    for event in events:
        log.publish(event)
    return log


async def test_a_whole_job_streams_in_order_and_ends_with_one_complete() -> None:
    log = log_of(
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
    )
    stream = sse_stream(log.follow_batches(), serialize_complete=serialize, max_previews_per_s=0.5, clock=FakeClock())
    frames = parse_with_ids(b"".join([chunk async for chunk in stream]))

    assert [name for name, _, _ in frames] == [
        "queued", "queued", "started", "executing", "progress", "preview", "progress", "output", "complete",
    ]  # fmt: skip
    assert [seq for _, _, seq in frames] == list(range(1, 10)), "each frame carries its event's sequence number"
    assert frames[1][1] == {"id": JOB, "position": 0}
    assert frames[3][1] == {"id": JOB, "node": "3", "class_type": "KSampler"}
    assert frames[4][1] == {"id": JOB, "node": "3", "value": 1, "max": 20, "percent": 10.0}
    assert [data["percent"] for name, data, _ in frames if name == "progress"] == [10.0, 55.5]
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


async def test_failed_carries_the_structured_error_and_the_metadata() -> None:
    error = ExecutionFailed("boom", node_id="3", node_type="KSampler", exception_type="RuntimeError")
    log = log_of(JobStarted(JOB), JobFailed(JOB, error=error), JobCompleted(JOB, result=make_result()))
    frames = await collect(sse_stream(log.follow_batches(), serialize_complete=serialize, metadata={"user": "u1"}))
    assert [name for name, _ in frames] == ["started", "failed"]
    assert frames[1][1] == {"id": JOB, "error": error.to_dict(), "metadata": {"user": "u1"}}
    assert frames[1][1]["error"]["details"]["node_type"] == "KSampler"


async def test_async_serializer_and_a_failing_one_still_end_with_one_terminal_frame() -> None:
    async def slow_serialize(result: JobResult) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"id": result.id}

    def broken(result: JobResult) -> dict[str, Any]:
        raise RuntimeError("cannot")

    for serializer, expected in ((slow_serialize, "complete"), (broken, "failed")):
        log = log_of(JobCompleted(JOB, result=make_result()))
        frames = await collect(sse_stream(log.follow_batches(), serialize_complete=serializer))
        assert [name for name, _ in frames] == [expected]
    assert frames[0][1]["error"]["type"] == "internal_error"


async def test_heartbeat_comments_fill_silence() -> None:
    log = JobEventLog(JOB)
    stream = sse_stream(log.follow_batches(heartbeat_s=0.01), serialize_complete=serialize)
    assert await anext(stream) == HEARTBEAT
    assert await anext(stream) == HEARTBEAT
    log.publish(JobStarted(JOB))
    assert parse(await anext(stream)) == [("started", {"id": JOB})]
    log.publish(JobCompleted(JOB, result=make_result()))
    assert parse(await anext(stream))[0][0] == "complete"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert parse(HEARTBEAT) == [("comment", "keep-alive")]


async def test_closing_the_stream_never_reaches_the_producer() -> None:
    log = JobEventLog(JOB)
    stream = sse_stream(log.follow_batches(), serialize_complete=serialize)
    log.publish(JobStarted(JOB))
    await anext(stream)
    await stream.aclose()  # the client went away
    log.publish(progress(50.0))  # the job goes on
    log.publish(JobCompleted(JOB, result=make_result()))
    assert log.ended and log.last_seq == 3


async def test_cancelling_a_waiting_consumer_leaves_the_log_alone() -> None:
    log = JobEventLog(JOB)
    stream = sse_stream(log.follow_batches(), serialize_complete=serialize)

    async def consume() -> None:
        async for _ in stream:
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await stream.aclose()
    log.publish(JobStarted(JOB))  # no exception
    assert log.last_seq == 1


async def test_previews_are_throttled_per_second_for_each_reader() -> None:
    log = JobEventLog(JOB, max_previews=100)
    for step in range(10):
        log.publish(PreviewProduced(JOB, node_id="3", content_type="image/png", data=bytes([step])))
    log.publish(JobCompleted(JOB, result=make_result()))

    async def previews_sent(max_per_s: float) -> list[bytes]:
        clock = itertools.count(100.0, 0.125).__next__  # the reader sees one preview each 1/8 s
        stream = sse_stream(
            log.follow_batches(), serialize_complete=serialize, max_previews_per_s=max_per_s, clock=clock
        )
        frames = await collect(stream)
        return [base64.b64decode(data["image"]) for name, data in frames if name == "preview"]

    assert await previews_sent(2.0) == [b"\x00", b"\x04", b"\x08"]  # one per half second
    assert await previews_sent(2.0) == [b"\x00", b"\x04", b"\x08"], "every reader is throttled on its own"
    assert await previews_sent(0) == []


async def test_a_burst_of_events_goes_out_as_one_piece_and_the_terminal_frame_is_built_once() -> None:
    calls: list[str] = []

    def counting(result: JobResult) -> dict[str, Any]:
        calls.append(result.id)
        return serialize(result)

    log = log_of(JobStarted(JOB), progress(10.0, 1), progress(20.0, 2), OutputReady(JOB, output=make_output()))
    log.publish(JobCompleted(JOB, result=make_result()))
    readers = [sse_stream(log.follow_batches(), serialize_complete=counting) for _ in range(3)]
    pieces = [[await anext(reader)] for reader in readers]  # all three are reading the job at once
    for reader, chunks in zip(readers, pieces, strict=True):
        chunks += [chunk async for chunk in reader]

    for chunks in pieces:
        assert len(chunks) == 2, "the four events that were waiting, then the complete frame"
        assert [name for name, _ in parse(chunks[0])] == ["started", "progress", "progress", "output"]
        assert [name for name, _ in parse(chunks[1])] == ["complete"]
    assert pieces[0] == pieces[1] == pieces[2]
    assert calls == [JOB], "one reader built the complete frame; the others were sent the same bytes"
    late = [chunk async for chunk in sse_stream(log.follow_batches(), serialize_complete=counting)]
    assert late == pieces[0] and calls == [JOB, JOB], "a reader after the others had gone builds it again"


async def test_a_large_terminal_frame_is_streamed_to_each_reader_and_never_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from comfyui_api.delivery import sse

    monkeypatch.setattr(sse, "SHARED_TERMINAL_MAX_BYTES", 64)
    payload = b"x" * 300

    def body(result: JobResult) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"id":"' + result.id.encode() + b'","blob":"'
            for start in range(0, len(payload), 100):
                yield payload[start : start + 100]
            yield b'"}'

        return chunks()

    log = log_of(JobStarted(JOB), JobCompleted(JOB, result=make_result()))
    terminal = log.replay()[-1]
    reader = sse_stream(log.follow_batches(), serialize_complete=body)
    chunks = [chunk async for chunk in reader]
    frames = parse(b"".join(chunks))
    assert frames[-1] == ("complete", {"id": JOB, "blob": "x" * 300})
    assert len(chunks) > 3, "past the bound the frame went out piece by piece"
    assert terminal.encoded is None, "a frame over the bound is not kept for other readers"
