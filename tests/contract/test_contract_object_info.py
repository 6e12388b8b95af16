"""/object_info/{Class}: every node the simulator implements describes itself exactly as ComfyUI 0.3.64 does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.scenarios import OBJECT_INFO_NODES

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "real" / "object_info.json"
# Combo inputs whose options are the files present on the server: only their shape is comparable.
FILE_COMBOS = {("LoadImage", "image"), ("LoadImageMask", "image"), ("CheckpointLoaderSimple", "ckpt_name"),
               ("LoadAudio", "audio")}  # fmt: skip


def recorded_nodes() -> dict[str, Any]:
    return dict(json.loads(RECORDED.read_text())["nodes"])


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
async def test_object_info_entry_matches_comfyui(http: httpx.AsyncClient, class_type: str) -> None:
    response = await http.get(f"/object_info/{class_type}")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [class_type], f"{class_type} is not a known node"
    expected = without_file_options(class_type, recorded_nodes()[class_type])
    actual = without_file_options(class_type, body[class_type])
    diffs = differences(expected, actual)
    assert not diffs, f"{class_type}:\n  " + "\n  ".join(diffs)


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
