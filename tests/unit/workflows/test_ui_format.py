"""UI-format workflows (as the editor saves them) converted with ComfyUI's node definitions: real templates (one
flat, two with subgraphs) against the widget values the template package records by name, and one hand-made case
per rule."""

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


def test_a_list_widget_with_a_control_skips_its_filter_too() -> None:
    """A list widget given `control_after_generate` saves its value, the control and a filter (the editor's
    control_filter_list); a save from before filters holds only the control."""
    definitions = {
        "PickStyle": {
            "input": {
                "required": {
                    "style": [["calm", "loud"], {"control_after_generate": True}],
                    "caption": ["STRING", {}],
                    "weight": ["FLOAT", {"default": 1.0}],
                }
            },
            "output": ["STRING"],
        }
    }
    for widgets in (["loud", "randomize", "^l", "hello", 0.5], ["loud", "fixed", "", "hello", 0.5]):
        graph = ui_to_api({"nodes": [node(4, "PickStyle", widgets=widgets)], "links": []}, definitions)
        assert graph["4"]["inputs"] == {"style": "loud", "caption": "hello", "weight": 0.5}, widgets
    older = ui_to_api({"nodes": [node(4, "PickStyle", widgets=["calm", "fixed", "hi", 2.0])], "links": []}, definitions)
    assert older["4"]["inputs"] == {"style": "calm", "caption": "hi", "weight": 2.0}


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
    group = node(4, "workflow>Upscale", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}])
    with pytest.raises(ConversionError, match=r"group node.*convert it to a subgraph") as refused:
        ui_to_api({"nodes": [named, group], "links": []}, DEFINITIONS)
    assert refused.value.node_id == "4"
    with pytest.raises(ConversionError, match="no node ComfyUI can run"):
        ui_to_api({"nodes": [node(5, "Note")], "links": []}, DEFINITIONS)


# -- subgraphs ------------------------------------------------------------------------------------------------------

UI_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}


def template(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "ui_workflows" / name).read_text())


def every_node(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(scope, node) for the top level and each subgraph definition's nodes (scope: the subgraph's id)."""
    found = [("", saved) for saved in document["nodes"]]
    for subgraph in document.get("definitions", {}).get("subgraphs", ()):
        found += [(subgraph["id"], saved) for saved in subgraph["nodes"]]
    return found


def definitions_for(document: dict[str, Any]) -> dict[str, Any]:
    """The recorded ComfyUI definitions, plus, for node types they lack (newer nodes), definitions built from what
    the template records: widget names in order from `widgets_values_named`, other inputs from the node's slots."""
    subgraphs = {graph["id"] for graph in document.get("definitions", {}).get("subgraphs", ())}
    found = dict(DEFINITIONS)
    for _, saved in every_node(document):
        kind = saved["type"]
        if kind in found or kind in subgraphs or kind in UI_ONLY:
            continue
        required: dict[str, Any] = {}
        for slot_ in saved.get("inputs", ()):
            if not slot_.get("widget"):  # a socket, never a widget (forceInput, as ComfyUI says of such inputs)
                required[slot_["name"]] = [slot_["type"], {"forceInput": True}]
        names = list(saved.get("widgets_values_named") or {})
        for index, name in enumerate(names):
            if name == "control_after_generate":
                continue
            value = saved["widgets_values_named"][name]
            widget = {bool: "BOOLEAN", int: "INT", float: "FLOAT"}.get(type(value), "STRING")
            seeded = index + 1 < len(names) and names[index + 1] == "control_after_generate"
            required[name] = [widget, {"control_after_generate": True}] if seeded else [widget]
        found[kind] = {"input": {"required": required}, "display_name": kind}
    return found


def assert_named_values(document: dict[str, Any], graph: dict[str, Any], instances: dict[str, str]) -> None:
    """Each converted node holds the widget values the template records (`instances`: subgraph id -> instance id,
    where the inner nodes' execution ids start)."""
    checked = 0
    for scope, saved in every_node(document):
        named = saved.get("widgets_values_named")
        node_id = f"{instances[scope]}:{saved['id']}" if scope else str(saved["id"])
        if not named or node_id not in graph:
            continue
        linked = {slot_["name"] for slot_ in saved.get("inputs", ()) if slot_.get("link") is not None}
        for name, value in named.items():
            if name not in ("control_after_generate", "upload") and name not in linked:
                assert graph[node_id]["inputs"][name] == value, (node_id, saved["type"], name)
                checked += 1
    assert checked >= 10


def test_a_template_whose_subgraph_instance_holds_its_widget_values() -> None:
    document = template("3d_hunyuan3d-v2.1.json")
    graph = ui_to_api(document, definitions_for(document))
    inner = {f"19:{number}" for number in (1, 3, 4, 6, 7, 8, 9, 13)}
    assert set(graph) == {"2", "10", *inner}  # the instance itself and the MarkdownNote are not run
    assert graph["10"]["inputs"]["mesh"] == ["19:9", 0]  # the instance's output, followed inside
    assert graph["19:13"]["inputs"]["image"] == ["2", 0]  # the subgraph's input, fed by the instance's link
    sampler = graph["19:7"]["inputs"]
    assert sampler["model"] == ["19:3", 0] and sampler["positive"] == ["19:6", 0]
    assert sampler["seed"] == 952805179515179 and sampler["steps"] == 30 and sampler["sampler_name"] == "euler"
    assert (
        graph["19:4"]["inputs"]["resolution"] == 4096 and graph["19:1"]["_meta"]["title"] == "ImageOnlyCheckpointLoader"
    )
    assert_named_values(document, graph, {document["definitions"]["subgraphs"][0]["id"]: "19"})

    instance = next(saved for saved in document["nodes"] if saved["id"] == 19)
    instance["widgets_values"][7] = 512  # the instance's own value for the subgraph input "resolution"...
    assert ui_to_api(document, definitions_for(document))["19:4"]["inputs"]["resolution"] == 512
    instance["widgets_values"] = []  # ...and, when it holds none, the inner node's
    assert ui_to_api(document, definitions_for(document))["19:4"]["inputs"]["resolution"] == 4096


def test_a_template_whose_subgraph_is_fed_by_links_from_outside() -> None:
    document = template("api_anthropic_claude_fable5_1.json")
    graph = ui_to_api(document, definitions_for(document))
    assert set(graph) == {"1", "12", "13", "14", "15", "16:6", "16:7", "16:8"}
    assert graph["13"]["inputs"]["text"] == ["16:8", 0]
    assert graph["16:6"]["inputs"]["string_b"] == ["14", 0]  # instance input string_b <- the multiline primitive
    assert graph["16:7"]["inputs"]["string_b"] == ["15", 0]  # instance input string_b_1 <- PreviewAny's output
    assert graph["16:8"]["inputs"]["string_a"] == ["16:6", 0] and graph["16:8"]["inputs"]["string_b"] == ["16:7", 0]
    assert graph["16:6"]["inputs"]["string_a"] == "USER PROMPT:\n\n"  # the inner node's own widget value
    assert_named_values(document, graph, {document["definitions"]["subgraphs"][0]["id"]: "16"})


def subgraph(
    graph_id: str, nodes: list[dict[str, Any]], links: list[dict[str, Any]], inputs: list[Any]
) -> dict[str, Any]:
    """A subgraph definition: `inputs` are (name, type, link ids); one IMAGE output."""
    return {
        "id": graph_id,
        "name": graph_id,
        "inputs": [{"name": name, "type": kind, "linkIds": ids} for name, kind, ids in inputs],
        "outputs": [{"name": "IMAGE", "type": "IMAGE"}],
        "nodes": nodes,
        "links": links,
    }


def link(link_id: int, origin: int, origin_slot: int, target: int, target_slot: int, kind: str) -> dict[str, Any]:
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": origin_slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": kind,
    }


# Subgraph "blur": its input 0 (IMAGE) -> ImageBlur(3) -> output 0; input 1 (INT) -> the blur's radius widget.
BLUR = subgraph(
    "blur",
    [
        node(
            3,
            "ImageBlur",
            inputs=[slot("image", "IMAGE", 1), slot("blur_radius", "INT", 2, widget="blur_radius")],
            outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [3]}],
            widgets=[1, 1.0],
        )
    ],
    [link(1, -10, 0, 3, 0, "IMAGE"), link(2, -10, 1, 3, 1, "INT"), link(3, 3, 0, -20, 0, "IMAGE")],
    [("image", "IMAGE", [1]), ("blur_radius", "INT", [2])],
)
# Subgraph "outer": an instance (7) of "blur" between its input and output, and a straight wire input -> output 1.
OUTER = {
    **subgraph(
        "outer",
        [
            node(
                7,
                "blur",
                inputs=[slot("image", "IMAGE", 4), slot("blur_radius", "INT", None, widget="blur_radius")],
                outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [5]}],
                widgets=[6],
            )
        ],
        [link(4, -10, 0, 7, 0, "IMAGE"), link(5, 7, 0, -20, 0, "IMAGE"), link(6, -10, 0, -20, 1, "IMAGE")],
        [("image", "IMAGE", [4, 6])],
    ),
    "outputs": [{"name": "IMAGE", "type": "IMAGE"}, {"name": "IMAGE", "type": "IMAGE"}],
}


def nested(mode: int = 0, output_slot: int = 0) -> dict[str, Any]:
    """EmptyImage(1) -> instance 5 of "outer" -> SaveImage(9), from the instance's output `output_slot`."""
    instance = node(
        5,
        "outer",
        inputs=[slot("image", "IMAGE", 1)],
        outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}, {"name": "IMAGE", "type": "IMAGE", "links": []}],
        mode=mode,
    )
    document = image_chain(instance, [[1, 1, 0, 5, 0, "IMAGE"], [2, 5, output_slot, 9, 0, "IMAGE"]])
    document["definitions"] = {"subgraphs": [OUTER, BLUR]}
    return document


def test_nested_subgraphs_take_nested_ids_and_widget_values_from_their_instance() -> None:
    graph = ui_to_api(nested(), DEFINITIONS)
    assert set(graph) == {"1", "9", "5:7:3"}
    assert graph["9"]["inputs"]["images"] == ["5:7:3", 0]
    assert graph["5:7:3"]["inputs"] == {"image": ["1", 0], "blur_radius": 6, "sigma": 1.0}
    assert ui_to_api(nested(output_slot=1), DEFINITIONS)["9"]["inputs"]["images"] == ["1", 0]  # input -> output


def test_a_muted_subgraph_is_left_out_and_a_bypassed_one_wired_through() -> None:
    muted = ui_to_api(nested(mode=2), DEFINITIONS)
    assert set(muted) == {"1", "9"} and "images" not in muted["9"]["inputs"]
    bypassed = ui_to_api(nested(mode=4), DEFINITIONS)
    assert set(bypassed) == {"1", "9"} and bypassed["9"]["inputs"]["images"] == ["1", 0]


def test_a_subgraph_that_contains_itself_is_refused() -> None:
    document = nested()
    looped = {**BLUR, "nodes": [*BLUR["nodes"], node(4, "blur")]}
    document["definitions"] = {"subgraphs": [OUTER, looped]}
    with pytest.raises(ConversionError, match="nested over"):
        ui_to_api(document, DEFINITIONS)


# -- group nodes (the older editor's) ---------------------------------------------------------------------------


def sampler_group_workflow(
    group_values: list[Any], inner: list[dict[str, Any]] | None = None, inner_links: list[list[Any]] | None = None
) -> dict[str, Any]:
    """Checkpoint, prompts and latent -> a group node "Sample and decode" (KSampler -> VAEDecode inside) -> SaveImage.
    The group's inputs are the inner inputs no inner link feeds (KSampler's model, positive, negative, latent_image,
    then VAEDecode's vae); its one output is VAEDecode's IMAGE (KSampler's LATENT only feeds the decoder)."""
    conditioning = {"name": "CONDITIONING", "type": "CONDITIONING", "links": [2]}
    group_inputs = [
        slot("model", "MODEL", 1),
        slot("positive", "CONDITIONING", 2),
        slot("negative", "CONDITIONING", 3),
        slot("latent_image", "LATENT", 4),
        slot("vae", "VAE", 5),
    ]
    return {
        "nodes": [
            node(1, "CheckpointLoaderSimple", widgets=["sd15.safetensors"], outputs=[
                {"name": "MODEL", "type": "MODEL", "links": [1]}, {"name": "CLIP", "type": "CLIP", "links": []},
                {"name": "VAE", "type": "VAE", "links": [5]}]),
            node(2, "CLIPTextEncode", widgets=["a cat"], outputs=[conditioning]),
            node(3, "CLIPTextEncode", widgets=["blurry"], outputs=[{**conditioning, "links": [3]}]),
            node(4, "EmptyLatentImage", widgets=[512, 512, 1],
                 outputs=[{"name": "LATENT", "type": "LATENT", "links": [4]}]),
            node(10, "workflow>Sample and decode", inputs=group_inputs, widgets=group_values,
                 outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [6]}]),
            node(9, "SaveImage", inputs=[slot("images", "IMAGE", 6)], widgets=["grouped"]),
        ],
        "links": [[1, 1, 0, 10, 0, "MODEL"], [2, 2, 0, 10, 1, "CONDITIONING"], [3, 3, 0, 10, 2, "CONDITIONING"],
                  [4, 4, 0, 10, 3, "LATENT"], [5, 1, 2, 10, 4, "VAE"], [6, 10, 0, 9, 0, "IMAGE"]],
        "extra": {"groupNodes": {"Sample and decode": {
            "nodes": inner if inner is not None else [
                {"type": "KSampler", "index": 0, "inputs": [],
                 "widgets_values": [1, "randomize", 20, 8, "euler", "normal", 1]},
                {"type": "VAEDecode", "index": 1, "inputs": []},
                {"type": "Note", "index": 2, "widgets_values": ["why these settings"]},
            ],
            "links": inner_links if inner_links is not None else [[0, 0, 1, 0, 7, "LATENT"]],
            "external": [],
        }}},
    }  # fmt: skip


def test_a_group_node_expands_with_the_instance_widget_values() -> None:
    graph = ui_to_api(sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9]), DEFINITIONS)
    assert set(graph) == {"1", "2", "3", "4", "9", "10:0", "10:1"}
    assert graph["10:0"]["class_type"] == "KSampler"
    assert graph["10:0"]["inputs"] == {
        "seed": 42,
        "steps": 25,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "karras",
        "denoise": 0.9,
        "model": ["1", 0],
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
    }
    assert graph["10:1"]["inputs"] == {"samples": ["10:0", 0], "vae": ["1", 2]}
    assert graph["9"]["inputs"]["images"] == ["10:1", 0]


def test_a_group_node_the_conversion_cannot_lay_out_is_refused_naming_what_it_uses() -> None:
    extra_value = [42, "fixed", 25, 6.5, "euler", "karras", 0.9, "?"]  # one more than the inner widgets take
    with pytest.raises(ConversionError, match="8 widget values where its inner nodes' widgets take 7") as refused:
        ui_to_api(sampler_group_workflow(extra_value), DEFINITIONS)
    assert refused.value.node_id == "10"
    stranger = sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9])
    stranger["nodes"][4]["inputs"].append({"name": "wobble", "type": "INT", "widget": {"name": "wobble"}, "link": 5})
    with pytest.raises(ConversionError, match="its input 'wobble' is a widget its inner nodes do not have"):
        ui_to_api(stranger, DEFINITIONS)
    garbled = sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9])
    garbled["extra"]["groupNodes"]["Sample and decode"]["links"] = [["zero", 0, 1, 0]]
    with pytest.raises(ConversionError, match="malformed link"):  # a 400 naming the node, never a crash
        ui_to_api(garbled, DEFINITIONS)
    muted = sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9])
    muted["nodes"][4]["mode"] = 2
    assert set(ui_to_api(muted, DEFINITIONS)) == {"1", "2", "3", "4", "9"}  # a muted group is left out unread


SAMPLER_SLOTS = [slot(name, kind, None) for name, kind in
                 (("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                  ("latent_image", "LATENT"))]  # fmt: skip


@pytest.mark.parametrize("saved_type", ["INT", ""])  # a link saved without its type: the widget it feeds tells
def test_a_primitive_and_a_reroute_inside_a_group_feed_what_they_are_linked_to(saved_type: str) -> None:
    inner = [
        {"type": "PrimitiveNode", "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "seed"}}]},
        {"type": "KSampler", "inputs": [*SAMPLER_SLOTS, slot("seed", "INT", 8, widget="seed")]},
        {"type": "Reroute", "inputs": [{"name": "", "type": "*", "link": 9}]},
        {"type": "VAEDecode", "inputs": []},
    ]
    links = [[0, 0, 1, 4, 8, saved_type], [1, 0, 2, 0, 9, "LATENT"], [2, 0, 3, 0, 10, "LATENT"]]
    # The primitive's value and its control come first (inner node 0), then the sampler's other widgets.
    graph = ui_to_api(sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9], inner, links), DEFINITIONS)
    assert set(graph) == {"1", "2", "3", "4", "9", "10:1", "10:3"}
    assert graph["10:1"]["inputs"] == {
        "seed": 42,
        "steps": 25,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "karras",
        "denoise": 0.9,
        "model": ["1", 0],
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
    }
    assert graph["10:3"]["inputs"] == {"samples": ["10:1", 0], "vae": ["1", 2]}  # through the reroute
    assert graph["9"]["inputs"]["images"] == ["10:3", 0]


def test_a_primitive_feeding_a_list_inside_a_group_saves_its_control_and_filter_too() -> None:
    inner = [
        {"type": "PrimitiveNode", "outputs": [{"name": "COMBO", "type": "COMBO", "widget": {"name": "sampler_name"}}]},
        {"type": "KSampler", "inputs": [*SAMPLER_SLOTS, slot("sampler_name", "COMBO", 8, widget="sampler_name")]},
        {"type": "VAEDecode", "inputs": []},
    ]
    links = [[0, 0, 1, 4, 8, "COMBO"], [1, 0, 2, 0, 9, "LATENT"]]
    values = ["dpmpp_2m", "fixed", "", 42, "fixed", 25, 6.5, "karras", 0.9]
    graph = ui_to_api(sampler_group_workflow(values, inner, links), DEFINITIONS)
    sampler = graph["10:1"]["inputs"]
    assert (sampler["sampler_name"], sampler["seed"], sampler["steps"], sampler["scheduler"]) == (
        "dpmpp_2m", 42, 25, "karras")  # fmt: skip
    with pytest.raises(ConversionError, match="8 widget values where its inner nodes' widgets take 9"):
        ui_to_api(sampler_group_workflow(values[:-1], inner, links), DEFINITIONS)


@pytest.mark.parametrize("fed", [False, True])
def test_a_widget_converted_to_an_input_inside_a_group_is_the_groups_last_widget_and_an_input(fed: bool) -> None:
    inner = [
        {"type": "KSampler", "inputs": [*SAMPLER_SLOTS, {"name": "seed", "type": "INT", "widget": {"name": "seed"}}]},
        {"type": "VAEDecode", "inputs": []},
    ]
    document = sampler_group_workflow([25, 6.5, "euler", "karras", 0.9, 42, "fixed"], inner)
    seed_slot = slot("seed", "INT", 7 if fed else None, widget="seed")
    document["nodes"][4]["inputs"].append(seed_slot)
    if fed:  # the instance's seed input, fed by a primitive outside the group
        document["nodes"].append(
            node(11, "PrimitiveNode", widgets=[7, "fixed"],
                 outputs=[{"name": "INT", "type": "INT", "links": [7], "widget": {"name": "seed"}}]))  # fmt: skip
        document["links"].append([7, 11, 0, 10, 5, "INT"])
    graph = ui_to_api(document, DEFINITIONS)
    assert graph["10:0"]["inputs"]["seed"] == (7 if fed else 42)
    assert (graph["10:0"]["inputs"]["steps"], graph["10:0"]["inputs"]["denoise"]) == (25, 0.9)


def test_a_groups_widget_found_by_its_editor_name_when_two_inner_nodes_share_a_widget_name() -> None:
    encoder = {"type": "CLIPTextEncode", "inputs": []}
    group_inputs = [
        slot("clip", "CLIP", 1),
        slot("Negative clip", "CLIP", 2),
        {"name": "Negative text", "type": "STRING", "widget": {"name": "Negative text"}, "link": 3},
    ]
    document = {
        "nodes": [
            node(1, "CheckpointLoaderSimple", widgets=["sd15.safetensors"],
                 outputs=[{"name": "CLIP", "type": "CLIP", "links": [1, 2]}]),
            node(11, "PrimitiveNode", widgets=["from outside"],
                 outputs=[{"name": "STRING", "type": "STRING", "links": [3], "widget": {"name": "Negative text"}}]),
            node(10, "workflow>Prompts", inputs=group_inputs, widgets=["a cat", "overridden"]),
        ],
        "links": [[1, 1, 1, 10, 0, "CLIP"], [2, 1, 1, 10, 1, "CLIP"], [3, 11, 0, 10, 2, "STRING"]],
        "extra": {"groupNodes": {"Prompts": {
            "nodes": [encoder, {**encoder, "title": "Negative"}], "links": [], "external": []}}},
    }  # fmt: skip
    graph = ui_to_api(document, DEFINITIONS)
    assert graph["10:0"]["inputs"] == {"text": "a cat", "clip": ["1", 1]}
    assert graph["10:1"]["inputs"] == {"text": "from outside", "clip": ["1", 1]}
    assert graph["10:1"]["_meta"]["title"] == "Negative"


def test_reroutes_at_a_groups_edges_are_its_input_and_output() -> None:
    document = {
        "nodes": [
            node(1, "EmptyImage", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}], widgets=[64, 32, 1, 255]),
            node(10, "workflow>Invert", inputs=[slot("IMAGE", "IMAGE", 1)],
                 outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}]),
            node(9, "SaveImage", inputs=[slot("images", "IMAGE", 2)], widgets=["out"]),
        ],
        "links": [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 9, 0, "IMAGE"]],
        "extra": {"groupNodes": {"Invert": {
            "nodes": [{"type": "Reroute"}, {"type": "ImageInvert"}, {"type": "Reroute"}],
            "links": [[0, 0, 1, 0, 5, "IMAGE"], [1, 0, 2, 0, 6, "IMAGE"]],
            "external": [[2, 0, "IMAGE"]],
        }}},
    }  # fmt: skip
    graph = ui_to_api(document, DEFINITIONS)
    assert set(graph) == {"1", "10:1", "9"}
    assert graph["10:1"]["inputs"] == {"image": ["1", 0]}
    assert graph["9"]["inputs"]["images"] == ["10:1", 0]


def test_a_reroute_at_a_groups_edge_takes_its_type_as_a_name_and_follows_the_config() -> None:
    """The editor names a reroute's group input after its type, so a later widget of that name gets the inner
    node's type as a prefix; a reroute input the group's config hides is fed by nothing."""
    definitions = {**DEFINITIONS, "Repeat": {
        "input": {"required": {"count": ["INT", {"forceInput": True}], "INT": ["INT", {"default": 1}]}},
        "output": ["INT"],
    }}  # fmt: skip

    def document(config: dict[str, Any], instance_inputs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "nodes": [
                node(1, "PrimitiveNode", widgets=[3, "fixed"],
                     outputs=[{"name": "INT", "type": "INT", "links": [1, 2], "widget": {"name": "count"}}]),
                node(10, "workflow>Repeat", inputs=instance_inputs, widgets=[5],
                     outputs=[{"name": "INT", "type": "INT", "links": []}]),
            ],
            "links": [[1, 1, 0, 10, 0, "INT"], [2, 1, 0, 10, 1, "INT"]],
            "extra": {"groupNodes": {"Repeat": {
                "nodes": [{"type": "Reroute"}, {"type": "Repeat"}],
                "links": [[0, 0, 1, 0, 5, "INT"]],
                "external": [[1, 0, "INT"]],
                "config": config,
            }}},
        }  # fmt: skip

    named = [slot("INT", "INT", 1), slot("Repeat INT", "INT", 2, widget="Repeat INT")]
    graph = ui_to_api(document({}, named), definitions)
    assert graph["10:1"]["inputs"] == {"count": 3, "INT": 3}  # through the reroute, and the renamed widget
    hidden = ui_to_api(document({"0": {"input": {"INT": {"visible": False}}}}, named[1:]), definitions)
    assert hidden["10:1"]["inputs"] == {"INT": 3}  # the hidden reroute input: nothing reaches `count`


def test_a_groups_config_renames_and_hides_its_slots_and_shows_an_inner_output() -> None:
    document = sampler_group_workflow([42, "fixed", 25, 6.5, "euler", "karras", 0.9])
    group = document["extra"]["groupNodes"]["Sample and decode"]
    group["config"] = {
        "0": {"input": {"seed": {"name": "noise"}}, "output": {"0": {"visible": True}}},
        "1": {"input": {"vae": {"visible": False}}},
    }
    instance = document["nodes"][4]
    instance["inputs"] = [*instance["inputs"][:4], slot("noise", "INT", 7, widget="noise")]  # no vae input now
    instance["outputs"] = [{"name": "LATENT", "type": "LATENT", "links": []},
                           {"name": "IMAGE", "type": "IMAGE", "links": [6]}]  # fmt: skip
    document["nodes"].append(
        node(11, "PrimitiveNode", widgets=[7, "fixed"],
             outputs=[{"name": "INT", "type": "INT", "links": [7], "widget": {"name": "noise"}}]))  # fmt: skip
    document["links"] = [link for link in document["links"] if link[0] != 5]
    document["links"] += [[7, 11, 0, 10, 4, "INT"]]
    document["links"] = [[6, 10, 1, 9, 0, "IMAGE"] if link[0] == 6 else link for link in document["links"]]
    graph = ui_to_api(document, DEFINITIONS)
    assert graph["10:0"]["inputs"]["seed"] == 7  # the renamed widget, fed from outside
    assert graph["10:1"]["inputs"] == {"samples": ["10:0", 0]}  # the hidden input: nothing feeds it
    assert graph["9"]["inputs"]["images"] == ["10:1", 0]  # the group's output 1, after the shown LATENT


def test_inner_nodes_keep_their_mode_bypassed_wired_through_and_muted_left_out() -> None:
    def inverting_group(modes: tuple[int, int]) -> dict[str, Any]:
        return {
            "nodes": [
                node(1, "EmptyImage", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1]}],
                     widgets=[64, 32, 1, 255]),
                node(10, "workflow>Twice", inputs=[slot("image", "IMAGE", 1)],
                     outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}]),
                node(9, "SaveImage", inputs=[slot("images", "IMAGE", 2)], widgets=["out"]),
            ],
            "links": [[1, 1, 0, 10, 0, "IMAGE"], [2, 10, 0, 9, 0, "IMAGE"]],
            "extra": {"groupNodes": {"Twice": {
                "nodes": [{"type": "ImageInvert", "mode": modes[0]}, {"type": "ImageInvert", "mode": modes[1]}],
                "links": [[0, 0, 1, 0, 5, "IMAGE"]],
                "external": [],
            }}},
        }  # fmt: skip

    bypassed = ui_to_api(inverting_group((4, 0)), DEFINITIONS)
    assert "10:0" not in bypassed and bypassed["10:1"]["inputs"] == {"image": ["1", 0]}
    muted = ui_to_api(inverting_group((0, 2)), DEFINITIONS)
    assert "10:1" not in muted and "images" not in muted["9"]["inputs"]  # what a muted node feeds gets nothing
