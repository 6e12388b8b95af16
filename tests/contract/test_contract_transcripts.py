"""Replay the sessions recorded against a real ComfyUI (tests/fixtures/real) and compare frame order and shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.contract.harness import Target
from tests.contract.transcript import compare_run, run_steps, substitutions_for

RECORDINGS = Path(__file__).resolve().parents[1] / "fixtures" / "real"
TRANSCRIPTS = sorted(path for path in RECORDINGS.glob("*.json") if path.name != "object_info.json")


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def test_transcripts_were_recorded() -> None:
    names = {path.stem for path in TRANSCRIPTS}
    assert {"invert_success", "invert_cached", "runtime_error", "invalid_prompts", "upload_sequence",
            "save_image_websocket", "txt2img_runs"} <= names  # fmt: skip


@pytest.mark.timeout(300)  # txt2img_runs loads a checkpoint on a real ComfyUI
@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[path.stem for path in TRANSCRIPTS])
async def test_replay_matches_the_recording(target: Target, path: Path) -> None:
    transcript = load(path)
    recorded_version = transcript["recorded_against"]["comfyui_version"]
    if target.version != recorded_version:
        pytest.skip(f"recorded on ComfyUI {recorded_version}; the target is {target.version} (see test_contract_runs)")
    steps = transcript["steps"]
    subs = await substitutions_for(target, transcript)
    if subs is None:
        pytest.skip(f"{path.stem} runs KSampler and the target has no checkpoint")
    replayed = await run_steps(target, steps, subs)
    diffs = compare_run(steps, replayed)
    assert not diffs, f"{path.name} differs from the recording:\n" + "\n".join(diffs)


def test_comparison_catches_order_key_and_value_changes() -> None:
    steps = load(RECORDINGS / "invert_success.json")["steps"]
    faithful = [{key: step[key] for key in ("response", "frames") if key in step} for step in steps]
    assert compare_run(steps, faithful) == []

    swapped = json.loads(json.dumps(faithful))
    frames = swapped[1]["frames"]
    frames[2], frames[3] = frames[3], frames[2]
    assert any("frame order" in diff for diff in compare_run(steps, swapped))

    missing_key = json.loads(json.dumps(faithful))
    del missing_key[1]["frames"][-1]["data"]["prompt_id"]
    assert any("keys missing ['prompt_id']" in diff for diff in compare_run(steps, missing_key))

    changed = json.loads(json.dumps(faithful))
    changed[2]["response"]["json"]["{{pid}}"]["status"]["status_str"] = "error"
    assert any("'success' != 'error'" in diff for diff in compare_run(steps, changed))

    retyped = json.loads(json.dumps(faithful))
    retyped[1]["frames"][-1]["data"]["node"] = "3"
    assert any("null None != str '3'" in diff for diff in compare_run(steps, retyped))
