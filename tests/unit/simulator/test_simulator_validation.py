"""Prompt validation against ComfyUI's recorded answers (captures/prompt_invalid.json) and its quirks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.simulator.nodes import build_registry
from comfyui_api.simulator.paths import Folders
from comfyui_api.simulator.validation import PromptValidator, types_match
from tests.unit.simulator.simulator_support import (
    invert_graph,
    load_capture,
    make_config,
    png_bytes,
    without_tracebacks,
)

INVALID = load_capture("prompt_invalid.json")


def make_validator(root: Path) -> PromptValidator:
    config = make_config(root)
    folders = Folders.create(config.base_dir, config.input_dir, config.output_dir, config.temp_dir,
                             config.user_dir, config.models_dir)  # fmt: skip
    folders.make_dirs()
    (config.input_dir / "cap_test.png").write_bytes(png_bytes())
    return PromptValidator(build_registry(), folders, config)


def recorded_graph_cases() -> list[Any]:
    cases = []
    for case in INVALID:
        body = case["request"].get("json")
        if isinstance(body, dict) and isinstance(body.get("prompt"), dict):
            cases.append(pytest.param(case, id=case["label"]))
    return cases


@pytest.mark.parametrize("case", recorded_graph_cases())
def test_verdict_matches_recorded_comfyui_answer(tmp_path: Path, case: dict[str, Any]) -> None:
    verdict = make_validator(tmp_path).validate(
        case["request"]["json"]["prompt"], case["request"]["json"].get("partial_execution_targets")
    )
    recorded = case["response"]["body"]["json"]
    if case["response"]["status"] == 200:
        assert verdict.ok
        assert without_tracebacks(verdict.node_errors) == without_tracebacks(recorded["node_errors"])
    else:
        assert not verdict.ok
        answer = {"error": verdict.error, "node_errors": verdict.node_errors}
        assert without_tracebacks(answer) == without_tracebacks(recorded)


def test_coerced_values_are_written_back_into_the_prompt(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["1"]["inputs"].update(width="64", height=48.9)
    assert make_validator(tmp_path).validate(prompt).ok
    assert (prompt["1"]["inputs"]["width"], prompt["1"]["inputs"]["height"]) == (64, 48)


def test_exception_traceback_lists_frames(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["2"]["inputs"]["image"] = ["99", 0]
    verdict = make_validator(tmp_path).validate(prompt)
    [error] = verdict.node_errors["2"]["errors"]
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert all(line.startswith("  File ") for line in error["extra_info"]["traceback"])


def test_partial_execution_targets_pick_outputs(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    verdict = make_validator(tmp_path).validate(prompt, ["4"])
    assert (verdict.ok, verdict.good_outputs) == (True, ["4"])


def test_cycle_fails_without_node_errors(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["2"]["inputs"]["image"] = ["4", 0]
    prompt["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    verdict = make_validator(tmp_path).validate(prompt)
    assert not verdict.ok
    assert verdict.error is not None and verdict.error["type"] == "prompt_outputs_failed_validation"
    assert verdict.node_errors == {}


def test_cycle_node_keeps_its_own_errors(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["2"] = {
        "class_type": "ImageBlend",
        "inputs": {"image1": ["1", 0], "image2": ["4", 0], "blend_factor": 5.0, "blend_mode": "normal"},
    }
    prompt["4"] = {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}}
    verdict = make_validator(tmp_path).validate(prompt)
    assert [e["type"] for e in verdict.node_errors["2"]["errors"]] == ["value_bigger_than_max"]


def test_v3_combo_values_are_not_checked(tmp_path: Path) -> None:
    prompt = invert_graph("p")
    prompt["2"] = {
        "class_type": "ImageBlend",
        "inputs": {"image1": ["1", 0], "image2": ["1", 0], "blend_factor": 0.5, "blend_mode": "no-such-mode"},
    }
    assert make_validator(tmp_path).validate(prompt).ok


@pytest.mark.parametrize("name", ["cap_test.png", "sub/cap_sub.png", "cap_out.png [output]"])
def test_load_image_accepts_subfolder_and_annotated_names(tmp_path: Path, name: str) -> None:
    validator = make_validator(tmp_path)
    (tmp_path / "input" / "sub").mkdir()
    (tmp_path / "input" / "sub" / "cap_sub.png").write_bytes(png_bytes())
    (tmp_path / "output" / "cap_out.png").write_bytes(png_bytes())
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip
    assert validator.validate(prompt).ok


def test_long_combo_lists_are_left_out_of_the_error(tmp_path: Path) -> None:
    validator = make_validator(tmp_path)
    for index in range(21):
        (tmp_path / "models" / "checkpoints" / f"m{index:02}.safetensors").write_bytes(b"x")
    prompt = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "nope.safetensors"}},
              "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}  # fmt: skip
    [error] = validator.validate(prompt).node_errors["1"]["errors"]
    assert error["details"] == "ckpt_name: 'nope.safetensors' not in (list of length 21)"
    assert error["extra_info"]["input_config"] is None


def test_combo_error_lists_the_options(tmp_path: Path) -> None:
    prompt = {"1": {"class_type": "LoadImageMask", "inputs": {"image": "cap_test.png", "channel": "purple"}},
              "2": {"class_type": "MaskPreview", "inputs": {"mask": ["1", 0]}}}  # fmt: skip
    [error] = make_validator(tmp_path).validate(prompt).node_errors["1"]["errors"]
    assert (error["type"], error["details"]) == (
        "value_not_in_list", "channel: 'purple' not in ['alpha', 'red', 'green', 'blue']")  # fmt: skip


@pytest.mark.parametrize(
    ("received", "expected", "matches"),
    [
        ("IMAGE", "IMAGE", True),
        ("MASK", "IMAGE", False),
        ("STRING", "*", True),
        ("INT,FLOAT", "FLOAT", True),
        ("STRING", ["a", "b"], False),
    ],
)
def test_link_type_matching(received: str, expected: Any, matches: bool) -> None:
    assert types_match(received, expected) is matches


def test_unknown_class_is_reported_before_anything_else(tmp_path: Path) -> None:
    prompt = json.loads(json.dumps(invert_graph("p")))
    prompt["2"]["class_type"] = "SomeCustomNode"
    verdict = make_validator(tmp_path).validate(prompt)
    assert verdict.error == {"type": "invalid_prompt", "message": "Cannot execute because node SomeCustomNode does "
                             "not exist.", "details": "Node ID '#2'", "extra_info": {}}  # fmt: skip
