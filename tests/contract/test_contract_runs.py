"""Runs recorded on a real ComfyUI 0.33.0 (tests/fixtures/real-0.33/runs.json), replayed on a target of that
version: the frames of a run in order with their data keys, and the history entry's shape.

Output names carry a fresh prefix per replay, so only shapes and the fields that do not depend on it are compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.graphs import unique_token
from tests.contract.harness import Target, open_ws, queue_prompt, wait_history, wait_idle

RECORDED = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "real-0.33" / "runs.json").read_text())
RUNS = RECORDED["runs"]


def _from_execution_start(frames: list[Any]) -> list[dict[str, Any]]:
    text = [frame for frame in frames if isinstance(frame, dict)]
    start = next(i for i, frame in enumerate(text) if frame["type"] == "execution_start")
    return text[start:]


def _shape(frame: dict[str, Any]) -> tuple[str, tuple[str, ...], Any]:
    data = frame.get("data") or {}
    node = data.get("node") if frame["type"] in ("executing", "executed") else None
    return frame["type"], tuple(sorted(data)), node


def _history_shape(entry: dict[str, Any]) -> dict[str, Any]:
    status = entry["status"]
    return {
        "keys": sorted(entry),
        "status": (status["status_str"], status["completed"]),
        "messages": [name for name, _ in status["messages"]],
        "outputs": {node: sorted(value) for node, value in entry["outputs"].items()},
        "meta": sorted(entry["meta"]),
        "extra_data": sorted(entry["prompt"][3]),
    }


def test_the_recordings_are_of_comfyui_0_33() -> None:
    assert RECORDED["recorded_against"]["comfyui_version"] == "0.33.0"
    assert set(RUNS) == {"basic", "invert", "error"}


@pytest.mark.parametrize("name", sorted(RUNS))
async def test_run_matches_the_0_33_recording(target: Target, http: httpx.AsyncClient, name: str) -> None:
    recorded_version = RECORDED["recorded_against"]["comfyui_version"]
    if target.version != recorded_version:
        pytest.skip(f"recorded on ComfyUI {recorded_version}; the target is {target.version}")
    run = RUNS[name]
    graph = json.loads(json.dumps(run["workflow"]))
    for node in graph.values():
        if "filename_prefix" in node["inputs"]:
            node["inputs"]["filename_prefix"] = f"contract_run_{unique_token()}"
    await wait_idle(http)
    async with open_ws(target) as ws:
        if any(frame["type"] == "feature_flags" for frame in run["frames"]):
            await ws.negotiate_features()
        prompt_id = await queue_prompt(http, graph, ws.client_id)
        frames = await ws.collect_run(prompt_id)
    recorded_frames = _from_execution_start(run["frames"])
    replayed = _from_execution_start(frames)
    assert [_shape(f) for f in replayed] == [_shape(f) for f in recorded_frames]
    recorded_id = run["post_body"]["prompt_id"]
    for frame in replayed:
        data = frame.get("data") or {}
        if "prompt_id" in data:
            assert data["prompt_id"] == prompt_id
    entry = await wait_history(http, prompt_id)
    assert _history_shape(entry) == _history_shape(run["history"][recorded_id])
