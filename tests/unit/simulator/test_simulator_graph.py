"""Execution order: the same topological dissolve as ComfyUI, checked against recorded `executing` orders."""

from __future__ import annotations

from typing import Any

import pytest

from comfyui_api.simulator.graph import DependencyCycleError, ExecutionList, is_link
from comfyui_api.simulator.nodes import build_registry
from tests.unit.simulator.simulator_support import txt2img_graph

REGISTRY = build_registry()


def run_order(prompt: dict[str, Any], outputs: list[str], cached: frozenset[str] = frozenset()) -> list[str]:
    order = ExecutionList(prompt, lambda n: REGISTRY[prompt[n]["class_type"]].output_node, lambda n: n in cached)
    for node_id in outputs:
        order.add_node(node_id)
    seen = []
    while not order.is_empty():
        seen.append(order.stage_next())
        order.complete_staged()
    return seen


def test_txt2img_runs_in_the_recorded_order() -> None:
    # captures/model_txt2img.json, txt2img_1step_cold: executing 4, 5, 7, 6, 3, 8, 9
    assert run_order(txt2img_graph("m.safetensors", "p", 1, 1), ["9"]) == ["4", "5", "7", "6", "3", "8", "9"]


def test_cached_nodes_are_not_scheduled() -> None:
    prompt = txt2img_graph("m.safetensors", "p", 1, 1)
    assert run_order(prompt, ["9"], frozenset({"4", "5", "6", "7"})) == ["3", "8", "9"]


@pytest.mark.parametrize("outputs", [["3", "4"], ["4", "3"]])
def test_a_ready_output_node_runs_first(outputs: list[str]) -> None:
    # captures/prompt_valid_media.json, G_text_preview_any: executing 4, 1, 2, 3
    prompt = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": "hello"}},
        "2": {"class_type": "StringConcatenate", "inputs": {"string_a": ["1", 0], "string_b": "world",
                                                             "delimiter": " "}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
        "4": {"class_type": "PreviewAny", "inputs": {"source": 12345}},
    }  # fmt: skip
    assert run_order(prompt, outputs) == ["4", "1", "2", "3"]


def test_a_node_feeding_an_output_is_preferred() -> None:
    # captures/prompt_valid_media.json, I_mask_latent (outputs 2 then 4): executing 1, 2, 3, 4
    prompt = {
        "1": {"class_type": "SolidMask", "inputs": {"value": 0.5, "width": 32, "height": 32}},
        "2": {"class_type": "MaskPreview", "inputs": {"mask": ["1", 0]}},
        "3": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "l"}},
    }
    assert run_order(prompt, ["2", "4"]) == ["1", "2", "3", "4"]


def test_a_cycle_stops_the_dissolve() -> None:
    prompt = {
        "1": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    order = ExecutionList(prompt, lambda n: n == "3", lambda n: False)
    order.add_node("3")
    with pytest.raises(DependencyCycleError):
        order.stage_next()


@pytest.mark.parametrize(
    ("value", "link"),
    [(["1", 0], True), (["1", 0.0], True), ([1, 0], False), (["1", "0"], False), (["1", 0, 2], False), ("1", False)],
)
def test_links_are_string_id_and_number(value: Any, link: bool) -> None:
    assert is_link(value) is link
