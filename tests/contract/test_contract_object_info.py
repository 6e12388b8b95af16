"""/object_info/{Class}: every node the simulator implements describes itself exactly as the ComfyUI it stands for
(recordings of 0.3.64 for every node; of 0.33.0 for the nodes captured there, the rest checked for 0.33's shape)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract import versions
from tests.contract.harness import Target
from tests.contract.scenarios import OBJECT_INFO_NODES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORDED = FIXTURES / "real" / "object_info.json"
RECORDED_033 = FIXTURES / "real-0.33" / "object_info.json"
# The keys of an object_info entry on ComfyUI 0.33, in order (output_tooltips and the V3 flags sit where they apply).
MODERN_KEYS = ("input", "input_order", "is_input_list", "output", "output_is_list", "output_name", "name",
               "display_name", "description", "python_module", "category", "output_node", "has_intermediate_output",
               "search_aliases")  # fmt: skip
# Combo inputs whose options are the files present on the server: only their shape is comparable.
FILE_COMBOS = {("LoadImage", "image"), ("LoadImageMask", "image"), ("CheckpointLoaderSimple", "ckpt_name"),
               ("LoadAudio", "audio")}  # fmt: skip


def recorded_nodes(path: Path = RECORDED) -> dict[str, Any]:
    return dict(json.loads(path.read_text())["nodes"])


def without_file_options(class_type: str, entry: dict[str, Any]) -> dict[str, Any]:
    entry = json.loads(json.dumps(entry))
    for section in entry.get("input", {}).values():
        for name, spec in section.items():
            if (class_type, name) not in FILE_COMBOS:
                continue
            if isinstance(spec[0], list):
                spec[0] = "<files>"
            elif len(spec) > 1 and "options" in spec[1]:
                spec[1]["options"] = "<files>"
    return entry


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        diffs = [] if list(expected) == list(actual) else [f"{path or '.'}: keys {list(expected)} != {list(actual)}"]
        for key in expected.keys() & actual.keys():
            diffs += differences(expected[key], actual[key], f"{path}.{key}")
        return diffs
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{path}[{i}]")
        ]
    if expected != actual or type(expected) is not type(actual):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


@pytest.mark.parametrize("class_type", OBJECT_INFO_NODES)
async def test_object_info_entry_matches_comfyui(http: httpx.AsyncClient, target: Target, class_type: str) -> None:
    response = await http.get(f"/object_info/{class_type}")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [class_type], f"{class_type} is not a known node"
    if target.at_least(versions.MODERN):
        recorded = recorded_nodes(RECORDED_033)
        if class_type not in recorded:
            assert_modern_shape(body[class_type], recorded_nodes()[class_type])
            return
    else:
        recorded = recorded_nodes()
    expected = without_file_options(class_type, recorded[class_type])
    actual = without_file_options(class_type, body[class_type])
    diffs = differences(expected, actual)
    assert not diffs, f"{class_type}:\n  " + "\n  ".join(diffs)


def assert_modern_shape(entry: dict[str, Any], as_of_0364: dict[str, Any]) -> None:
    """A node without a 0.33 recording: 0.33's keys in 0.33's order, and still the same node (name, output flag,
    input names) as 0.3.64 described it. Output nodes may have gained a pass-through output."""
    keys = [key for key in entry if key in MODERN_KEYS]
    assert keys == list(MODERN_KEYS)
    assert entry["is_input_list"] is False and entry["has_intermediate_output"] is False
    assert isinstance(entry["search_aliases"], list)
    assert (entry["name"], entry["output_node"]) == (as_of_0364["name"], as_of_0364["output_node"])
    assert entry["input_order"] == as_of_0364["input_order"]
    if not entry["output_node"]:
        assert entry["output"] == as_of_0364["output"]


async def test_file_combos_list_the_files_present(http: httpx.AsyncClient) -> None:
    name = (await http.post("/upload/image", files={"image": ("contract_combo.png", b"x", "image/png")})).json()["name"]
    spec = (await http.get("/object_info/LoadImage")).json()["LoadImage"]["input"]["required"]["image"]
    assert name in spec[0] and spec[1] == {"image_upload": True}
    models = (await http.get("/models/checkpoints")).json()
    ckpt = (await http.get("/object_info/CheckpointLoaderSimple")).json()["CheckpointLoaderSimple"]
    assert ckpt["input"]["required"]["ckpt_name"][0] == models


async def test_full_object_info_contains_the_same_entries(http: httpx.AsyncClient) -> None:
    everything = (await http.get("/object_info")).json()
    for class_type in OBJECT_INFO_NODES:
        single = (await http.get(f"/object_info/{class_type}")).json()[class_type]
        assert without_file_options(class_type, everything[class_type]) == without_file_options(class_type, single)


@pytest.mark.real_only
async def test_real_comfyui_lists_its_whole_catalogue(http: httpx.AsyncClient) -> None:
    everything = (await http.get("/object_info")).json()
    assert len(everything) > 400, "ComfyUI 0.3.64 lists ~496 nodes; the simulator only the ones it implements"
    modules = {entry["python_module"].split(".")[0] for entry in everything.values()}
    assert {"nodes", "comfy_extras", "comfy_api_nodes", "custom_nodes"} <= modules
