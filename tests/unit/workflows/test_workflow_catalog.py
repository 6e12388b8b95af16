"""Loading WORKFLOW_DIR: file layout, schema files, and load errors that name the file and the entry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyui_api.workflows.catalog import WorkflowCatalog, WorkflowLoadError
from comfyui_api.workflows.workflow import InputKind, Target
from tests.unit.workflows.factories import (
    CAPTURED_CHECKPOINT,
    SHIPPED_WORKFLOWS,
    img2img_graph,
    object_info,
    txt2img_graph,
    write_workflow,
)

TXT2IMG_SCHEMA = """
summary: Text to image
description: Draws what the prompt says.
inputs:
  prompt:
    target: 6.inputs.text
    required: true
    description: What to draw.
    example: a red fox
  negative_prompt:
    target: 7.inputs.text
  seed:
    targets: [3.inputs.seed]
    minimum: 0
    maximum: 1000
    default: 3
"""


def load_problems(workflow_dir: Path, info: dict | None = None) -> list[str]:
    with pytest.raises(WorkflowLoadError) as caught:
        WorkflowCatalog.load(workflow_dir, object_info() if info is None else info)
    assert str(len(caught.value.problems)) in str(caught.value)
    return list(caught.value.problems)


def test_a_graph_with_a_yaml_schema_becomes_a_workflow_at_its_relative_path(tmp_path: Path) -> None:
    graph_path = write_workflow(tmp_path, "sdxl/txt2img", txt2img_graph(), TXT2IMG_SCHEMA)

    catalog = WorkflowCatalog.load(tmp_path, object_info())

    assert [workflow.route for workflow in catalog] == ["sdxl/txt2img"]
    workflow = catalog.get("sdxl/txt2img")
    assert workflow is not None
    assert workflow.source == graph_path
    assert (workflow.summary, workflow.description) == ("Text to image", "Draws what the prompt says.")
    assert [spec.name for spec in workflow.inputs] == ["prompt", "negative_prompt", "seed"]
    prompt, negative, seed = workflow.inputs
    assert (prompt.kind, prompt.required, prompt.example, prompt.description) == (
        InputKind.STRING,
        True,
        "a red fox",
        "What to draw.",
    )
    assert prompt.targets == (Target("6", "text"),)
    assert (negative.required, negative.default) == (False, "blurry")  # the graph's value
    assert (seed.kind, seed.minimum, seed.maximum, seed.default) == (InputKind.INTEGER, 0, 1000, 3)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".schema.json"])
def test_schema_files_may_be_yaml_or_json(tmp_path: Path, suffix: str) -> None:
    schema = {"inputs": {"prompt": {"target": "6.inputs.text", "required": True}}}
    write_workflow(tmp_path, "t2i", txt2img_graph(), json.dumps(schema), schema_suffix=suffix)

    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("t2i")

    assert workflow is not None
    assert [(spec.name, spec.required) for spec in workflow.inputs] == [("prompt", True)]


def test_hidden_files_and_other_files_are_ignored_and_routes_are_sorted(tmp_path: Path) -> None:
    write_workflow(tmp_path, "b/two", txt2img_graph())
    write_workflow(tmp_path, "a", txt2img_graph())
    write_workflow(tmp_path, ".cache/old", "not json at all")
    (tmp_path / "README.md").write_text("# notes")

    catalog = WorkflowCatalog.load(tmp_path, object_info())

    assert [workflow.route for workflow in catalog] == ["a", "b/two"]
    assert len(catalog) == 2
    assert catalog.get("missing") is None


def test_code_workflows_are_reported_never_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_workflow(tmp_path, "a", txt2img_graph())
    (tmp_path / "sdxl").mkdir()
    (tmp_path / "sdxl" / "txt2img.ts").write_text("export default { generateWorkflow: () => ({}) }")

    catalog = WorkflowCatalog.load(tmp_path, object_info())

    assert [workflow.route for workflow in catalog] == ["a"]
    [warning] = [record.getMessage() for record in caplog.records if "sdxl/txt2img.ts" in record.getMessage()]
    assert "never runs" in warning and "Export (API)" in warning


def test_an_empty_directory_is_an_empty_catalog_and_a_missing_one_an_error(tmp_path: Path) -> None:
    assert len(WorkflowCatalog.load(tmp_path, object_info())) == 0
    problems = load_problems(tmp_path / "nope")
    assert problems == [f"{tmp_path / 'nope'} is not a directory"]


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (
            "inputs:\n  prompt:\n    target: 6.inputs.text\n    minimun: 3\n",
            "inputs.prompt: Object contains unknown field `minimun`",
        ),
        (
            "inputs:\n  prompt:\n    target: 6.text\n",
            "inputs.prompt: target '6.text' must look like '<node id>.inputs.<input name>'",
        ),
        (
            "inputs:\n  prompt:\n    type: text\n    target: 6.inputs.text\n",
            "inputs.prompt: Invalid enum value 'text' (at `type`)",
        ),
        ("inputs:\n  prompt: {}\n", "inputs.prompt: give exactly one of `target` (a string) or `targets` (a list)"),
        ("inputs:\n  2fast:\n    target: 6.inputs.text\n", "inputs.2fast: an input name must be letters"),
        (
            "inputs:\n  prompt:\n    target: 99.inputs.text\n",
            "inputs.prompt: target 99.inputs.text: the graph has no node '99'",
        ),
        (
            "inputs:\n  prompt:\n    target: 6.inputs.txt\n",
            "inputs.prompt: target 6.inputs.txt: CLIPTextEncode has no input 'txt' (it has: text, clip)",
        ),
        (
            "inputs:\n  prompt:\n    target: 6.inputs.clip\n",
            "inputs.prompt: target 6.inputs.clip: that input is connected to node '4'",
        ),
        (
            "inputs:\n  p:\n    target: 6.inputs.text\n  q:\n    target: 6.inputs.text\n",
            "inputs p and q both set 6.inputs.text",
        ),
        ("summary: [1, 2]\n", "Expected `str | null`, got `array` (at `summary`)"),
        ("inputs:\n  - prompt\n", "Expected `object | null`, got `array` (at `inputs`)"),
        ("inputs: {prompt: {target: 6.inputs.text}\n", "is not valid YAML"),
    ],
)
def test_schema_problems_name_the_file_and_the_entry(tmp_path: Path, schema: str, expected: str) -> None:
    write_workflow(tmp_path, "sub/flow", txt2img_graph(), schema)

    problems = load_problems(tmp_path)

    assert len(problems) == 1
    assert problems[0].startswith("sub/flow.yaml: "), problems
    assert expected in problems[0]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ("{not json", "sub/flow.json: is not valid JSON"),
        ([1, 2], "must be an API-format graph"),
        ({}, "has no nodes"),
        ({"nodes": [], "links": []}, "is a UI-format workflow; export it from ComfyUI with 'Export (API)'"),
        ({"1": {"inputs": {}}}, "node 1: has no class_type"),
        ({"1": {"class_type": "SaveImage", "inputs": []}}, "node 1: `inputs` must be an object"),
    ],
)
def test_graph_problems_name_the_file_and_the_node(tmp_path: Path, graph: object, expected: str) -> None:
    write_workflow(tmp_path, "sub/flow", graph)

    problems = load_problems(tmp_path)

    assert len(problems) == 1
    assert problems[0].startswith("sub/flow.json: ")
    assert expected in problems[0]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path: Path) -> None:
    write_workflow(
        tmp_path, "one", txt2img_graph(), "inputs:\n  a:\n    target: 1.inputs.x\n  b:\n    target: 2.inputs.y\n"
    )
    write_workflow(tmp_path, "two", "[]")
    (tmp_path / "orphan.yaml").write_text("inputs: {}\n")
    write_workflow(tmp_path, "bad name", txt2img_graph())

    problems = load_problems(tmp_path)

    assert sorted(problem.split(":")[0] for problem in problems) == [
        "bad name.json",
        "one.yaml",
        "one.yaml",
        "orphan.yaml",
        "two.json",
    ]
    assert any("a schema file without a graph orphan.json" in problem for problem in problems)


def test_two_schema_files_for_one_graph_are_refused(tmp_path: Path) -> None:
    write_workflow(tmp_path, "flow", txt2img_graph(), "inputs: {}\n")
    (tmp_path / "flow.schema.json").write_text("{}")

    problems = load_problems(tmp_path)

    assert problems == ["flow.json: several schema files (flow.schema.json, flow.yaml); keep one"]


def test_a_schema_without_inputs_falls_back_to_title_markers(tmp_path: Path) -> None:
    graph = txt2img_graph(titles={"6": "$prompt!"})
    write_workflow(tmp_path, "flow", graph, "summary: Marked\n")

    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("flow")

    assert workflow is not None
    assert workflow.summary == "Marked"
    assert [(spec.name, spec.required) for spec in workflow.inputs] == [("prompt", True)]


def test_declared_inputs_ignore_title_markers(tmp_path: Path) -> None:
    graph = txt2img_graph(titles={"7": "$negative"})
    write_workflow(tmp_path, "flow", graph, "inputs:\n  prompt:\n    target: 6.inputs.text\n")

    workflow = WorkflowCatalog.load(tmp_path, object_info()).get("flow")

    assert workflow is not None
    assert [spec.name for spec in workflow.inputs] == ["prompt"]


def test_the_shipped_example_workflows_load_against_a_real_object_info() -> None:
    catalog = WorkflowCatalog.load(SHIPPED_WORKFLOWS, object_info(), default_checkpoint=CAPTURED_CHECKPOINT)

    assert [workflow.route for workflow in catalog] == [
        "scenarios/cpu_quickly", "scenarios/text2img", "sd15/txt2img", "sdxl/img2img", "sdxl/txt2img",
    ]  # fmt: skip
    scenario = catalog.get("scenarios/text2img")
    assert scenario is not None
    defaults = {spec.name: spec.default for spec in scenario.inputs}
    assert {name: defaults[name] for name in ("width", "height", "steps", "cfg", "negative_prompt")} == {
        "width": 512, "height": 512, "steps": 20, "cfg": 7.0, "negative_prompt": "",
    }  # fmt: skip
    txt2img = catalog.get("sdxl/txt2img")
    img2img = catalog.get("sdxl/img2img")
    assert txt2img is not None and img2img is not None
    assert {spec.name for spec in txt2img.inputs} >= {"prompt", "negative_prompt", "seed", "steps", "width", "height"}
    assert {spec.name: spec.kind for spec in img2img.inputs}["input_image"] is InputKind.IMAGE
    assert [spec.name for spec in img2img.inputs if spec.required] == ["prompt", "input_image"]
    sampler = txt2img.input_named("sampler_name")
    assert sampler is not None and "dpmpp_2m" in sampler.options


def test_the_shipped_img2img_graph_is_a_real_img2img() -> None:
    graph = json.loads((SHIPPED_WORKFLOWS / "sdxl" / "img2img.json").read_text())
    expected = img2img_graph()

    assert {node["class_type"] for node in graph.values()} == {node["class_type"] for node in expected.values()}
