"""UI-format workflows (as the editor saves them) converted with ComfyUI's node definitions: a real template against
the widget values the template package records by name, and one hand-made case per rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.workflows.ui_format import ConversionError, ui_to_api, widget_inputs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DEFINITIONS: dict[str, Any] = json.loads((FIXTURES / "real" / "object_info.json").read_text())["nodes"]


def node(
    node_id: int,
    kind: str,
    *,
    inputs: list[dict[str, Any]] = (),
    outputs: list[dict[str, Any]] = (),
    widgets: Any = None,
    mode: int = 0,
    title: str | None = None,
) -> dict[str, Any]:
    made: dict[str, Any] = {"id": node_id, "type": kind, "mode": mode, "inputs": list(inputs), "outputs": list(outputs)}
    if widgets is not None:
        made["widgets_values"] = widgets
    if title is not None:
        made["title"] = title
    return made


def slot(name: str, kind: str, link: int | None, widget: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"name": name, "type": kind, "link": link}
    if widget:
        made["widget"] = {"name": widget}
    return made


def image_chain(middle: dict[str, Any], links: list[list[Any]]) -> dict[str, Any]:
    """EmptyImage(1) -> middle -> SaveImage(9)."""
    return {
        "nodes": [
            node(1, "EmptyImage", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}], widgets=[64, 32, 1, 255]),
            middle,
            node(9, "SaveImage", inputs=[slot("images", "IMAGE", 2)], widgets=["out"]),
        ],
        "links": links,
    }


def test_a_real_template_converts_to_the_values_it_records() -> None:
    document = json.loads((FIXTURES / "ui_workflows" / "image_sdxl_simple.json").read_text())
    graph = ui_to_api(document, DEFINITIONS)
    assert {entry["class_type"] for entry in graph.values()} == {
        "CheckpointLoaderSimple",
        "CLIPTextEncode",
        "EmptyLatentImage",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    }  # fmt: skip  (the MarkdownNote is left out)
    for saved in document["nodes"]:
        named = saved.get("widgets_values_named")
        if not named or str(saved["id"]) not in graph:
            continue
        inputs = graph[str(saved["id"])]["inputs"]
        for name, value in named.items():
            if name != "control_after_generate":  # the seed's UI setting, not an input
                assert inputs[name] == value, (saved["type"], name)
    sampler = next(entry for entry in graph.values() if entry["class_type"] == "KSampler")
    assert sampler["inputs"]["model"][1] == 0 and sampler["_meta"]["title"] == "KSampler"


def test_a_seed_skips_its_control_slot_and_widget_order_follows_the_definition() -> None:
    assert ("seed", True) in widget_inputs(DEFINITIONS["KSampler"])
    sampler = node(3, "KSampler", widgets=[7, "fixed", 20, 8.0, "euler", "normal", 1.0], title="Sample")
    graph = ui_to_api({"nodes": [sampler], "links": []}, DEFINITIONS)
    assert graph["3"]["inputs"] == {
        "seed": 7,
        "steps": 20,
        "cfg": 8.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "denoise": 1.0,
    }
    assert graph["3"]["_meta"] == {"title": "Sample"}


def test_reroutes_and_primitives_are_resolved() -> None:
    document = image_chain(
        node(5, "Reroute", inputs=[slot("", "*", 1)], outputs=[{"name": "", "type": "IMAGE", "links": [2]}]),
        [[1, 1, 0, 5, 0, "IMAGE"], [2, 5, 0, 9, 0, "IMAGE"]],
    )
    document["nodes"].append(
        node(7, "PrimitiveNode", outputs=[{"name": "INT", "type": "INT", "links": [3]}], widgets=[512, "fixed"])
    )
    document["nodes"][0]["inputs"] = [slot("width", "INT", 3, widget="width")]
    document["links"].append(
        {"id": 3, "origin_id": 7, "origin_slot": 0, "target_id": 1, "target_slot": 0, "type": "INT"}
    )
    graph = ui_to_api(document, DEFINITIONS)
    assert graph["9"]["inputs"]["images"] == ["1", 0]  # through the reroute
    assert graph["1"]["inputs"]["width"] == 512  # the primitive's value wins over the saved widget value
    assert set(graph) == {"1", "9"}


def test_a_bypassed_node_is_wired_through_and_a_muted_one_dropped() -> None:
    invert = node(
        4,
        "ImageInvert",
        inputs=[slot("image", "IMAGE", 1)],
        outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}],
        mode=4,
    )
    links = [[1, 1, 0, 4, 0, "IMAGE"], [2, 4, 0, 9, 0, "IMAGE"]]
    bypassed = ui_to_api(image_chain(invert, links), DEFINITIONS)
    assert set(bypassed) == {"1", "9"} and bypassed["9"]["inputs"]["images"] == ["1", 0]
    muted = ui_to_api(image_chain({**invert, "mode": 2}, links), DEFINITIONS)
    assert set(muted) == {"1", "9"} and "images" not in muted["9"]["inputs"]


def test_named_widget_values_and_what_is_refused() -> None:
    named = node(1, "EmptyImage", widgets={"width": 8, "height": 9, "batch_size": 1, "color": 0, "extra": True})
    assert ui_to_api({"nodes": [named], "links": []}, DEFINITIONS)["1"]["inputs"] == {
        "width": 8,
        "height": 9,
        "batch_size": 1,
        "color": 0,
    }
    unknown = node(2, "NoSuchNode", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}])
    with pytest.raises(ConversionError, match="no node type 'NoSuchNode'") as refused:
        ui_to_api({"nodes": [named, unknown], "links": []}, DEFINITIONS)
    assert refused.value.node_id == "2"
    label = node(3, "SomeExtensionLabel")  # not connected to anything: a UI-only node
    assert set(ui_to_api({"nodes": [named, label], "links": []}, DEFINITIONS)) == {"1"}
    subgraph = {
        "nodes": [named, node(4, "9f3c0a52-1111-4222-8333-444455556666")],
        "links": [],
        "definitions": {"subgraphs": [{"id": "9f3c0a52-1111-4222-8333-444455556666"}]},
    }
    with pytest.raises(ConversionError, match="Export \\(API\\)"):
        ui_to_api(subgraph, DEFINITIONS)
    with pytest.raises(ConversionError, match="no node ComfyUI can run"):
        ui_to_api({"nodes": [node(5, "Note")], "links": []}, DEFINITIONS)
