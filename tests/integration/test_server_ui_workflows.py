"""POST /prompt takes a workflow as the editor saves it: converted with the running ComfyUI's node definitions
(here the simulator's), run like any graph; one that cannot be converted is a 400 naming the node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.server import ServerProcess, decode_image, running_server

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("ui-workflows"))


def editor_workflow(middle_type: str = "ImageInvert", middle_mode: int = 0) -> dict[str, Any]:
    """EmptyImage (red, through a Reroute) -> ImageInvert -> SaveImage, as the editor saves it."""
    return {
        "last_node_id": 9,
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], "widgets_values": [16, 16, 1, 0xFF0000]},
            {"id": 5, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}],
             "outputs": [{"name": "", "type": "IMAGE", "links": [2]}]},
            {"id": 4, "type": middle_type, "mode": middle_mode,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 2}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}], "title": "Flip colours"},
            {"id": 9, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 3}],
             "outputs": [], "widgets_values": ["editor"]},
            {"id": 12, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["a note"]},
        ],
        "links": [[1, 1, 0, 5, 0, "IMAGE"], [2, 5, 0, 4, 0, "IMAGE"], [3, 4, 0, 9, 0, "IMAGE"]],
        "version": 0.4,
    }  # fmt: skip


def test_an_editor_workflow_runs(server: ServerProcess) -> None:
    answer = httpx.post(server.url("/prompt"), json={"prompt": editor_workflow()}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert decode_image(answer.json()["images"][0]).getpixel((1, 1)) == (0, 255, 255)  # red, inverted
    bypassed = httpx.post(server.url("/prompt"), json={"prompt": editor_workflow(middle_mode=4)}, timeout=60)
    assert bypassed.status_code == 200, bypassed.text
    assert decode_image(bypassed.json()["images"][0]).getpixel((1, 1)) == (255, 0, 0)  # the invert was bypassed


def test_an_unknown_node_type_is_a_400_naming_the_node(server: ServerProcess) -> None:
    answer = httpx.post(server.url("/prompt"), json={"prompt": editor_workflow("NoSuchNode")}, timeout=30)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == "prompt.nodes.4"
    assert "NoSuchNode" in error["message"] and "Export (API)" in error["message"]


def editor_workflow_with_subgraph() -> dict[str, Any]:
    """EmptyImage (red) -> an instance (4) of a subgraph holding ImageInvert (2) -> SaveImage (3), as a newer
    editor saves it: the inner nodes run with ids 4:2 and 4:3."""
    inner = {
        "id": "5d0c2d4e-6f3a-4b61-9d7e-1a2b3c4d5e6f",
        "name": "Flip and save",
        "inputs": [{"name": "image", "type": "IMAGE", "linkIds": [11]}],
        "outputs": [],
        "nodes": [
            {"id": 2, "type": "ImageInvert", "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 11}],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [12]}]},
            {"id": 3, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 12}],
             "outputs": [], "widgets_values": ["subgraph"]},
        ],
        "links": [
            {"id": 11, "origin_id": -10, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "IMAGE"},
            {"id": 12, "origin_id": 2, "origin_slot": 0, "target_id": 3, "target_slot": 0, "type": "IMAGE"},
        ],
    }  # fmt: skip
    return {
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], "widgets_values": [16, 16, 1, 0xFF0000]},
            {"id": 4, "type": inner["id"], "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": 1}],
             "outputs": []},
        ],
        "links": [[1, 1, 0, 4, 0, "IMAGE"]],
        "definitions": {"subgraphs": [inner]},
        "version": 0.4,
    }  # fmt: skip


def test_a_workflow_with_a_subgraph_runs_and_names_the_inner_nodes(server: ServerProcess) -> None:
    answer = httpx.post(server.url("/prompt"), json={"prompt": editor_workflow_with_subgraph()}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert decode_image(body["images"][0]).getpixel((1, 1)) == (0, 255, 255)  # inverted inside the subgraph
    assert [output["node_id"] for output in body["outputs"]] == ["4:3"]


def test_a_workflow_with_a_group_node_runs(server: ServerProcess) -> None:
    """The older editor's group node: EmptyImage -> group "Flip and save" (ImageInvert -> SaveImage inside), saved
    when SaveImage had no output (the simulator's 0.33 profile gives it a pass-through one, left unlinked)."""
    workflow = {
        "nodes": [
            {"id": 1, "type": "EmptyImage", "mode": 0, "inputs": [],
             "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}], "widgets_values": [16, 16, 1, 0xFF0000]},
            {"id": 4, "type": "workflow>Flip and save", "mode": 0,
             "inputs": [{"name": "image", "type": "IMAGE", "link": 1}], "outputs": [], "widgets_values": ["grouped"]},
        ],
        "links": [[1, 1, 0, 4, 0, "IMAGE"]],
        "extra": {"groupNodes": {"Flip and save": {
            "nodes": [{"type": "ImageInvert", "index": 0, "inputs": []},
                      {"type": "SaveImage", "index": 1, "inputs": [], "widgets_values": ["inner"]}],
            "links": [[0, 0, 1, 0, 2, "IMAGE"]],
            "external": [],
        }}},
    }  # fmt: skip
    answer = httpx.post(server.url("/prompt"), json={"prompt": workflow}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert decode_image(body["images"][0]).getpixel((1, 1)) == (0, 255, 255)
    [output] = body["outputs"]
    assert output["node_id"] == "4:1"  # the SaveImage inside the group
    assert "_grouped_" in output["filename"]  # its prefix is the instance's value, not the one saved inside
