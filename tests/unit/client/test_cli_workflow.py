"""`comfyui-api workflow convert|inputs` offline, with node definitions saved from a real ComfyUI's /object_info
(tests/fixtures/real/object_info.json) and a template the editor saved (tests/fixtures/ui_workflows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.cli import main
from comfyui_api.workflows.ui_format import ui_to_api

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
TEMPLATE = FIXTURES / "ui_workflows" / "image_sdxl_simple.json"


@pytest.fixture
def object_info(tmp_path: Path) -> Path:
    definitions = json.loads((FIXTURES / "real" / "object_info.json").read_text())["nodes"]
    saved = tmp_path / "object_info.json"
    saved.write_text(json.dumps(definitions))
    return saved


def test_convert_prints_what_the_editor_would_export(object_info: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "convert", str(TEMPLATE), "--object-info", str(object_info)]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = ui_to_api(json.loads(TEMPLATE.read_text()), json.loads(object_info.read_text()))
    assert printed == expected
    assert any(node["class_type"] == "KSampler" for node in printed.values())


def test_convert_writes_to_out_and_leaves_an_api_workflow_as_it_is(tmp_path: Path, object_info: Path) -> None:
    api = tmp_path / "api.json"
    assert main(["workflow", "convert", str(TEMPLATE), "--object-info", str(object_info), "-o", str(api)]) == 0
    again = tmp_path / "again.json"
    assert main(["workflow", "convert", str(api), "-o", str(again)]) == 0, "no definitions needed for API format"
    assert json.loads(again.read_text()) == json.loads(api.read_text())


def test_inputs_lists_values_not_links(tmp_path: Path, object_info: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["workflow", "inputs", str(TEMPLATE), "--object-info", str(object_info), "--json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    graph = ui_to_api(json.loads(TEMPLATE.read_text()), json.loads(object_info.read_text()))
    sampler = next(node_id for node_id, node in graph.items() if node["class_type"] == "KSampler")
    keys = {row["key"] for row in rows}
    assert f"{sampler}.inputs.seed" in keys and f"{sampler}.inputs.steps" in keys
    assert f"{sampler}.inputs.model" not in keys, "a link to another node is not something to --set"
    seed = next(row for row in rows if row["key"] == f"{sampler}.inputs.seed")
    assert seed["value"] == graph[sampler]["inputs"]["seed"] and seed["class_type"] == "KSampler"

    body = tmp_path / "body.json"
    body.write_text(json.dumps({"prompt": graph, "id": "x"}))  # a POST /prompt body works too
    assert main(["workflow", "inputs", str(body)]) == 0
    text = capsys.readouterr().out
    assert f"{sampler}.inputs.seed" in text and "(KSampler)" in text


def test_what_cannot_be_converted_or_read_is_said(
    tmp_path: Path, object_info: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads(TEMPLATE.read_text())
    odd = next(node for node in document["nodes"] if node["type"] == "KSampler")
    odd["type"] = "NoSuchNode"
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(document))
    assert main(["workflow", "convert", str(broken), "--object-info", str(object_info)]) == 1
    assert f"(node {odd['id']})" in capsys.readouterr().err
    assert main(["workflow", "convert", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: not a readable JSON workflow" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["workflow", "convert"])
    assert usage.value.code == 2
