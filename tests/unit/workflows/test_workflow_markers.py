"""Inputs marked by node titles: `$name`, `$name.field`, `!` for required, and the main-input rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.workflows.catalog import WorkflowCatalog, WorkflowLoadError
from comfyui_api.workflows.markers import marker_declarations
from comfyui_api.workflows.workflow import InputKind, Target
from tests.unit.workflows.factories import img2img_graph, object_info, txt2img_graph, write_workflow


@pytest.mark.parametrize(
    ("node", "expected_field"),
    [
        ({"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}}, "text"),
        ({"class_type": "LoadImage", "inputs": {"image": "a.png", "upload": "image"}}, "image"),
        ({"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "m.safetensors"}}, "ckpt_name"),
        ({"class_type": "PrimitiveInt", "inputs": {"value": 3}}, "value"),
        ({"class_type": "SomeCustomNode", "inputs": {"value": 1, "other": 2}}, "value"),
        ({"class_type": "SomeCustomNode", "inputs": {"amount": 1.5, "image": ["2", 0]}}, "amount"),
    ],
)
def test_a_bare_marker_names_the_main_input(node: dict, expected_field: str) -> None:
    node = {**node, "_meta": {"title": "$thing"}}

    declarations, problems = marker_declarations({"12": node})

    assert problems == []
    assert [(d.name, d.targets, d.required) for d in declarations] == [("thing", (Target("12", expected_field),), None)]


def test_several_markers_in_one_title_and_explicit_fields() -> None:
    graph = txt2img_graph(titles={"3": "$seed.seed  $steps.steps!", "5": "$width.width $height.height"})

    declarations, problems = marker_declarations(graph)

    assert problems == []
    assert [(d.name, d.targets[0], d.required) for d in declarations] == [
        ("seed", Target("3", "seed"), None),
        ("steps", Target("3", "steps"), True),
        ("width", Target("5", "width"), None),
        ("height", Target("5", "height"), None),
    ]


def test_one_name_on_several_nodes_is_one_input_with_several_targets() -> None:
    graph = txt2img_graph(titles={"6": "$text", "7": "$text!"})

    declarations, problems = marker_declarations(graph)

    assert problems == []
    assert len(declarations) == 1
    assert declarations[0].targets == (Target("6", "text"), Target("7", "text"))
    assert declarations[0].required is True


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        (
            "$seed",
            "node 3 (KSampler) has several inputs (seed, steps, cfg, sampler_name, scheduler, denoise); "
            "name one, e.g. $seed.seed",
        ),
        ("$seed words", "'words' is not a marker"),
        ("$1seed", "'$1seed' is not a marker"),
    ],
)
def test_unclear_titles_are_load_errors(title: str, expected: str) -> None:
    graph = txt2img_graph(titles={"3": title})

    declarations, problems = marker_declarations(graph)

    assert declarations == []
    assert len(problems) == 1
    assert problems[0].startswith(f"node 3 title {title!r}: {expected}")


def test_titles_without_a_leading_dollar_are_ordinary_titles() -> None:
    graph = txt2img_graph(titles={"6": "Positive $prompt", "7": "Negative"})

    assert marker_declarations(graph) == ([], [])


def test_marked_inputs_take_types_choices_and_defaults_from_object_info(tmp_path: Path) -> None:
    titles = {"3": "$seed.seed $sampler.sampler_name", "6": "$prompt!", "10": "$input_image"}
    write_workflow(tmp_path, "i2i", img2img_graph(titles=titles))

    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("i2i")

    assert workflow is not None
    specs = {spec.name: spec for spec in workflow.inputs}
    assert (specs["seed"].kind, specs["seed"].default, specs["seed"].required) == (InputKind.INTEGER, 5, False)
    assert specs["seed"].description == "The random seed used for creating the noise."
    assert specs["sampler"].kind is InputKind.ENUM
    assert (specs["sampler"].default, specs["sampler"].options[:2]) == ("euler", ("euler", "euler_cfg_pp"))
    assert (specs["prompt"].kind, specs["prompt"].required) == (InputKind.STRING, True)
    # LoadImage's graph value is a file name, not a URL or base64, so the image must be given.
    assert (specs["input_image"].kind, specs["input_image"].required) == (InputKind.IMAGE, True)


def test_a_bad_marker_fails_the_load_naming_the_graph_file(tmp_path: Path) -> None:
    write_workflow(tmp_path, "flows/t2i", txt2img_graph(titles={"3": "$seed"}))

    with pytest.raises(WorkflowLoadError) as caught:
        WorkflowCatalog.load(tmp_path, object_info())

    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith("flows/t2i.json: node 3 title '$seed': node 3 (KSampler) has several")
