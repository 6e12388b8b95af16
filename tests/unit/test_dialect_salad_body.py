"""The streamed sync response: valid JSON in Salad's shape, base64 identical to a one-shot encoding whatever the
chunk size, files removed after streaming (also when the client stops reading)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from comfyui_api.dialects.salad_body import CHUNK_BYTES, result_body
from comfyui_api.jobs.model import JobResult, OutputFile, Stats


def make_result(tmp_path: Path, sizes: list[int]) -> JobResult:
    folder = tmp_path / "work"
    folder.mkdir(parents=True)
    outputs = []
    for index, size in enumerate(sizes):
        path = folder / f"job@{index:03d}_{index}.png"
        path.write_bytes(os.urandom(size))
        outputs.append(OutputFile("9", "image", f"{index}.png", "", "output", "image/png", size, path=path))
    stats = Stats(
        queue_wait_ms=1.5,
        execution_start_ms=10,
        execution_end_ms=30,
        execution_ms=20,
        nodes={"9": {"start": 10.0, "duration": 20.0}},
        total_ms=40,
    )
    return JobResult("job", {"9": {"class_type": "SaveImage", "inputs": {}}}, outputs, ["hi"], stats)


async def collect(result: JobResult, chunk_bytes: int = CHUNK_BYTES) -> tuple[bytes, int]:
    chunks = [chunk async for chunk in result_body(result, chunk_bytes=chunk_bytes)]
    return b"".join(chunks), len(chunks)


@pytest.mark.parametrize("chunk_bytes", [3, 30, 3 * 1024])
async def test_body_matches_a_one_shot_encoding(tmp_path: Path, chunk_bytes: int) -> None:
    result = make_result(tmp_path, [0, 1, 2, 3, 1000, 4097])
    originals = [output.path.read_bytes() for output in result.outputs if output.path]
    body, _ = await collect(result, chunk_bytes)
    decoded = json.loads(body)
    assert decoded["images"] == [base64.b64encode(data).decode() for data in originals]
    assert decoded["filenames"] == [f"{i}.png" for i in range(6)]
    assert decoded["outputs"][4] == {
        "node_id": "9",
        "kind": "image",
        "filename": "4.png",
        "content_type": "image/png",
        "size_bytes": 1000,
    }
    assert decoded["texts"] == ["hi"]
    assert decoded["id"] == "job" and decoded["prompt"]["9"]["class_type"] == "SaveImage"
    assert decoded["stats"] == {
        "queue_wait": 1.5,
        "comfy_execution": {"start": 10, "end": 30, "duration": 20, "nodes": {"9": {"start": 10.0, "duration": 20.0}}},
        "preprocess_time": 0.0,
        "comfy_round_trip_time": 0.0,
        "postprocess_time": 0.0,
        "total_time": 40,
    }
    assert list((tmp_path / "work").iterdir()) == []


async def test_big_files_are_sent_in_many_chunks(tmp_path: Path) -> None:
    result = make_result(tmp_path, [CHUNK_BYTES * 3 + 5])
    _, chunk_count = await collect(result)
    assert chunk_count >= 4 + 2  # head, opening quote... and at least four slices of the file


async def test_files_are_removed_when_the_client_stops_reading(tmp_path: Path) -> None:
    result = make_result(tmp_path, [10_000, 10_000])
    stream = result_body(result, chunk_bytes=300)
    await anext(stream)
    await anext(stream)
    await stream.aclose()
    assert list((tmp_path / "work").iterdir()) == []
    assert all(output.path is None for output in result.outputs)


def test_chunk_size_keeps_base64_seamless() -> None:
    assert CHUNK_BYTES % 3 == 0
