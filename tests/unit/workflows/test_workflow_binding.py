"""Turning a request's `input` object into a graph copy: values applied, defaults, and 400s naming input.<name>."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.errors import InvalidRequest
from comfyui_api.workflows.catalog import WorkflowCatalog
from comfyui_api.workflows.workflow import MAX_RANDOM_SEED, InputKind, Target, Workflow, WorkflowInput
from tests.unit.workflows.factories import PNG_BASE64, img2img_graph, object_info, write_workflow

SCHEMA = """
inputs:
  prompt: {target: 6.inputs.text, required: true}
  negative_prompt: {target: 7.inputs.text, default: ugly}
  input_image: {target: 10.inputs.image, type: image, required: true}
  seed: {target: 3.inputs.seed, randomize: true, maximum: 1000}
  steps: {target: 3.inputs.steps, maximum: 50}
  denoise: {target: 3.inputs.denoise}
  sampler: {target: 3.inputs.sampler_name}
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Workflow:
    write_workflow(tmp_path, "sdxl/img2img", img2img_graph(), SCHEMA)
    loaded = WorkflowCatalog.load(tmp_path, object_info()).get("sdxl/img2img")
    assert loaded is not None
    return loaded


URL = "https://example.com/fox.png"
BASE = {"prompt": "p", "input_image": URL}


def bind_error(workflow: Workflow, values: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        workflow.bind(values)
    return caught.value


def test_values_are_written_to_their_targets_in_a_copy(workflow: Workflow) -> None:
    original = copy.deepcopy(dict(workflow.graph))
    values = {"prompt": "a fox", "input_image": "https://example.com/fox.png", "seed": 7, "steps": 30}

    graph = workflow.bind(values)

    assert graph["6"]["inputs"]["text"] == "a fox"
    assert graph["7"]["inputs"]["text"] == "ugly"  # declared default
    assert graph["10"]["inputs"]["image"] == "https://example.com/fox.png"
    assert (graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"]) == (7, 30)
    assert graph["3"]["inputs"]["denoise"] == 0.6  # omitted, graph default
    assert graph["3"]["inputs"]["model"] == ["4", 0]  # links untouched
    assert dict(workflow.graph) == original
    graph["6"]["inputs"]["text"] = "changed"
    assert workflow.bind(values)["6"]["inputs"]["text"] == "a fox"


def test_an_omitted_randomized_seed_is_drawn_within_bounds(workflow: Workflow) -> None:
    seeds = {workflow.bind(BASE, rng=random.Random(n))["3"]["inputs"]["seed"] for n in range(20)}

    assert len(seeds) > 1
    assert all(0 <= seed <= 1000 for seed in seeds)
    asked = {workflow.bind({**BASE, "seed": -1}, rng=random.Random(n))["3"]["inputs"]["seed"] for n in range(20)}
    assert len(asked) > 1 and all(0 <= seed <= 1000 for seed in asked), "-1 asks for a random seed too"
    assert workflow.bind({**BASE, "seed": 7})["3"]["inputs"]["seed"] == 7


def test_randomized_values_stay_within_what_json_clients_read_exactly() -> None:
    spec = WorkflowInput("seed", InputKind.INTEGER, (Target("3", "seed"),), minimum=0, maximum=2**64 - 1)

    assert all(0 <= spec.random_value(random.Random(n)) <= MAX_RANDOM_SEED for n in range(50))


def test_null_counts_as_omitted(workflow: Workflow) -> None:
    graph = workflow.bind({**BASE, "negative_prompt": None})

    assert graph["7"]["inputs"]["text"] == "ugly"


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({}, "input.prompt", "input.prompt is required"),
        (None, "input.prompt", "input.prompt is required"),
        ({"prompt": None, "input_image": URL}, "input.prompt", "input.prompt is required"),
        ({"prompt": "p"}, "input.input_image", "input.input_image is required"),
        ([], "input", "input must be an object, got an array"),
        ({**BASE, "promt": "x"}, "input.promt", "input.promt is not an input of workflow sdxl/img2img"),
        ({**BASE, "prompt": 3}, "input.prompt", "input.prompt must be a string, got an integer"),
        ({**BASE, "steps": 51}, "input.steps", "input.steps must be at most 50, got 51"),
        ({**BASE, "steps": 0}, "input.steps", "input.steps must be at least 1, got 0"),
        ({**BASE, "steps": 2.5}, "input.steps", "input.steps must be an integer, got a number"),
        ({**BASE, "steps": True}, "input.steps", "input.steps must be an integer, got a boolean"),
        ({**BASE, "denoise": "1"}, "input.denoise", "input.denoise must be a finite number, got a string"),
        ({**BASE, "denoise": 1.5}, "input.denoise", "input.denoise must be at most 1.0, got 1.5"),
        ({**BASE, "sampler": "magic"}, "input.sampler", "input.sampler must be one of ['euler', "),
        ({"prompt": "p", "input_image": "cat.png"}, "input.input_image", "must be a URL (e.g. https://...) or base64"),
        ({"prompt": "p", "input_image": ""}, "input.input_image", "must be a non-empty string"),
        ({"prompt": "p", "input_image": {"url": "x"}}, "input.input_image", "must be a non-empty string"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(workflow: Workflow, values: Any, field: str, message: str) -> None:
    error = bind_error(workflow, values)

    assert error.field == field
    assert error.status_code == 400
    assert message in error.message
    assert error.to_dict()["field"] == field


def test_unknown_inputs_are_listed_with_the_accepted_names(workflow: Workflow) -> None:
    error = bind_error(workflow, {**BASE, "cfg": 3})

    assert error.message == (
        "input.cfg is not an input of workflow sdxl/img2img (it takes: denoise, input_image, negative_prompt, "
        "prompt, sampler, seed, steps)"
    )


def test_long_choice_lists_are_shortened_in_messages(workflow: Workflow) -> None:
    error = bind_error(workflow, {**BASE, "sampler": "magic"})

    assert "more)]" in error.message
    assert len(error.message) < 400


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/a.png",
        "s3://bucket/key.png",
        "data:image/png;base64," + PNG_BASE64,
        PNG_BASE64,
    ],
)
def test_media_inputs_accept_urls_and_base64(workflow: Workflow, value: str) -> None:
    assert workflow.bind({"prompt": "p", "input_image": value})["10"]["inputs"]["image"] == value


def test_one_input_may_set_several_nodes(tmp_path: Path) -> None:
    schema = "inputs:\n  text:\n    targets: [6.inputs.text, 7.inputs.text]\n"
    write_workflow(tmp_path, "both", img2img_graph(), schema)
    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("both")
    assert workflow is not None

    graph = workflow.bind({"text": "same"})

    assert graph["6"]["inputs"]["text"] == graph["7"]["inputs"]["text"] == "same"


def test_an_optional_input_without_default_leaves_the_graphs_value(tmp_path: Path) -> None:
    schema = "inputs:\n  input_image:\n    target: 10.inputs.image\n    type: image\n    required: false\n"
    write_workflow(tmp_path, "keep", img2img_graph(), schema)
    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("keep")
    assert workflow is not None

    assert workflow.bind({})["10"]["inputs"]["image"] == "example.png"
    assert workflow.bind({"input_image": URL})["10"]["inputs"]["image"] == URL
