"""The body of a synchronous POST /prompt answer, written as a stream: each output file is base64-encoded chunk by
chunk straight from disk (in a worker thread), so memory stays flat whatever the output size. The job's local
output files are removed once the body was sent (or the client went away).

Knows the wire shape (`dialects/salad.py`) and the domain result; nothing about ComfyUI or HTTP frameworks.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from comfyui_api.dialects.salad import ExecutionStats, OutputInfo, StatsBody
from comfyui_api.errors import ComfyApiError
from comfyui_api.jobs.model import JobResult, OutputFile, Stats
from comfyui_api.jobs.output_delivery import delivery_failure
from comfyui_api.jobs.outputs import discard
from comfyui_api.jobs.store import JobRecord

# A multiple of 3 bytes, so that the base64 of consecutive chunks concatenates without padding in between.
CHUNK_BYTES = 3 * 256 * 1024
# Files this small are read and encoded on the event loop (well under a millisecond): a thread hop would cost more.
INLINE_READ_BYTES = 256 * 1024
# Answers whose base64 payload is this small are sent in one piece: one write instead of one per field and chunk.
SINGLE_PIECE_MAX_BYTES = 1024 * 1024


def stats_body(stats: Stats) -> StatsBody:
    return StatsBody(
        queue_wait=stats.queue_wait_ms,
        comfy_execution=ExecutionStats(
            start=stats.execution_start_ms,
            end=stats.execution_end_ms,
            duration=stats.execution_ms,
            nodes=stats.nodes,
        ),
        preprocess_time=stats.preprocess_ms,
        comfy_round_trip_time=stats.comfy_round_trip_ms,
        postprocess_time=stats.postprocess_ms,
        total_time=stats.total_ms,
        upload_time=stats.upload_ms or None,  # only when something was uploaded
    )


def output_info(output: OutputFile) -> OutputInfo:
    return OutputInfo(
        node_id=output.node_id,
        kind=output.kind,
        filename=output.filename,
        content_type=output.content_type,
        size_bytes=output.size_bytes,
        url=output.url,
        error=output.error,
        note=output.note,
    )


def _read_encoded(handle: BinaryIO, size_bytes: int) -> bytes:
    return base64.b64encode(handle.read(size_bytes))


def inline_payload_bytes(result: JobResult) -> int:
    """How many bytes of output files the body will carry as base64 (uploaded outputs are only URLs)."""
    return sum(output.size_bytes for output in result.outputs if output.url is None and output.path is not None)


async def _encoded_file(path: Path, chunk_bytes: int, size_bytes: int) -> AsyncIterator[bytes]:
    if size_bytes <= INLINE_READ_BYTES:
        yield base64.b64encode(path.read_bytes())  # noqa: ASYNC240 - deliberate, see INLINE_READ_BYTES
        return
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(_read_encoded, handle, chunk_bytes):
            yield chunk
    finally:
        handle.close()


async def result_body(
    result: JobResult,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    failure: ComfyApiError | None = None,
    discard_files: bool = True,
    metadata: Mapping[str, Any] | None = None,
) -> AsyncIterator[bytes]:
    """`PromptResponse` as JSON bytes, field by field; `images[i]` is the URL of an uploaded output, else streamed
    from `result.outputs[i].path` ("" when it has neither). `failure` becomes the body's `error`. The output files
    are removed afterwards unless `discard_files` is False (a body read more than once, e.g. a signed webhook)."""
    encode = msgspec.json.encode
    try:
        yield b'{"id":' + encode(result.id) + b',"prompt":' + encode(result.graph) + b',"images":['
        for index, output in enumerate(result.outputs):
            if index:
                yield b","
            if output.url is not None:
                yield encode(output.url)
                continue
            yield b'"'
            if output.path is not None:
                async for chunk in _encoded_file(output.path, chunk_bytes, output.size_bytes):
                    yield chunk
            yield b'"'
        yield (
            b'],"filenames":'
            + encode([output.filename for output in result.outputs])
            + b',"outputs":'
            + encode([output_info(output) for output in result.outputs])
            + b',"texts":'
            + encode(result.texts)
            + b',"stats":'
            + encode(stats_body(result.stats))
            + (b',"error":' + encode(failure.to_dict()) if failure is not None else b"")
            + (b',"metadata":' + encode(metadata) if metadata is not None else b"")
            + b"}"
        )
    finally:
        if discard_files:
            discard(result.outputs)


def record_body(record: JobRecord) -> AsyncIterator[bytes]:
    """The synchronous body of a completed job's record: its result, the upload failure (if any) as `error`, and
    the request's metadata. The record owns the files: reading the body never removes them (hold the record
    while it is read)."""
    job, result = record.request, record.result
    assert result is not None, "only a completed record has a body"
    return result_body(result, failure=delivery_failure(job, result), discard_files=False, metadata=job.metadata)
