"""Which folder a loader input reads: learnt from ComfyUI's /object_info (captured from ComfyUI 0.3.64), then the
static table of core loaders, then well-known input names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.models.loaders import (
    STATIC_LOADER_INPUTS,
    LoaderFolders,
    combo_options,
    discover_loader_folders,
    loader_inputs_from_object_info,
)

# The copy of ComfyUI captures kept for the simulator tests.
CAPTURES = Path(__file__).resolve().parents[1] / "simulator" / "captures"


def captured_object_info() -> dict[str, Any]:
    data = json.loads((CAPTURES / "object_info_core_nodes.json").read_text())
    return {name: info for name, info in data.items() if not name.startswith("_")}


def captured_folders() -> dict[str, list[str]]:
    """GET /models and GET /models/checkpoints as captured; the other folders were empty."""
    exchanges = json.loads((CAPTURES / "http_get_endpoints.json").read_text())
    bodies = {e["label"]: e["response"]["body"].get("json") for e in exchanges}
    folders: dict[str, list[str]] = {name: [] for name in bodies["GET /models"]}
    folders["checkpoints"] = bodies["GET /models/checkpoints"]
    return folders


class RecordedComfy:
    """ComfyUI's /object_info and /models answers, replayed from the captures."""

    def __init__(self, object_info: dict[str, Any], folders: dict[str, list[str]]):
        self._object_info = object_info
        self._folders = folders
        self.listed: list[str | None] = []

    async def object_info(self) -> dict[str, Any]:
        return self._object_info

    async def list_models(self, folder: str | None = None) -> list[str]:
        self.listed.append(folder)
        return list(self._folders) if folder is None else list(self._folders[folder])


class BrokenComfy:
    async def object_info(self) -> dict[str, Any]:
        raise ConnectionError("refused")

    async def list_models(self, folder: str | None = None) -> list[str]:
        raise AssertionError("not reached")


def test_combo_options_reads_v1_and_v3_specs() -> None:
    assert combo_options([["a.safetensors", "b.ckpt"], {"tooltip": "x"}]) == ["a.safetensors", "b.ckpt"]
    assert combo_options(["COMBO", {"options": ["x.pt"], "default": "x.pt"}]) == ["x.pt"]
    assert combo_options([[]]) == []
    assert combo_options(["INT", {"default": 1}]) is None
    assert combo_options(["IMAGE"]) is None
    assert combo_options("nope") is None


def test_captured_object_info_maps_the_checkpoint_loader_and_nothing_else() -> None:
    found = loader_inputs_from_object_info(captured_object_info(), captured_folders())
    # LoadImage's combo (["example.png"]) lists the input dir, not a model folder; empty folders match nothing.
    assert found == {("CheckpointLoaderSimple", "ckpt_name"): "checkpoints"}


async def test_discovery_against_recorded_comfy() -> None:
    comfy = RecordedComfy(captured_object_info(), captured_folders())
    folders = await discover_loader_folders(comfy)
    assert folders.discovered == {("CheckpointLoaderSimple", "ckpt_name"): "checkpoints"}
    assert "checkpoints" in folders.folders and "upscale_models" in folders.folders
    assert "custom_nodes" not in folders.folders  # listed by ComfyUI, but not a model folder
    assert "custom_nodes" not in comfy.listed


async def test_discovery_falls_back_to_the_static_table_when_comfy_cannot_answer() -> None:
    folders = await discover_loader_folders(BrokenComfy())
    assert folders.discovered == {}
    assert folders.folder_for("CheckpointLoaderSimple", "ckpt_name") == "checkpoints"


def test_custom_loaders_are_learnt_and_ambiguous_lists_are_not() -> None:
    object_info = {
        "MyLoraStack": {"input": {"required": {"lora_01": [["style.safetensors"], {}]}}},
        "UnetLoaderGGUF": {"input": {"required": {"unet_name": [["flux.gguf"]]}}},
        "V3Loader": {"input": {"optional": {"encoder": ["COMBO", {"options": ["wav.pt"]}]}}},
        "Twin": {"input": {"required": {"which": [["same.pt"]]}}},
        "Broken": {"input": "not a mapping"},
    }
    files = {
        "loras": ["style.safetensors"],
        "diffusion_models": ["flux.gguf"],
        "audio_encoders": ["wav.pt"],
        "vae": ["same.pt"],
        "gligen": ["same.pt"],
    }
    found = loader_inputs_from_object_info(object_info, files)
    assert found == {
        ("MyLoraStack", "lora_01"): "loras",
        ("UnetLoaderGGUF", "unet_name"): "diffusion_models",
        ("V3Loader", "encoder"): "audio_encoders",
    }


@pytest.mark.parametrize(("key", "folder"), sorted(STATIC_LOADER_INPUTS.items()))
def test_every_core_loader_has_a_folder(key: tuple[str, str], folder: str) -> None:
    assert LoaderFolders().folder_for(*key) == folder


def test_lookup_order_discovered_then_static_then_input_name() -> None:
    folders = LoaderFolders(discovered={("CLIPLoader", "clip_name"): "clip_vision"})
    assert folders.folder_for("CLIPLoader", "clip_name") == "clip_vision"  # what ComfyUI says wins
    assert folders.folder_for("CLIPVisionLoader", "clip_name") == "clip_vision"
    assert folders.folder_for("SomeCustomLoader", "lora_name") == "loras"
    assert folders.folder_for("SomeCustomLoader", "clip_name1") == "text_encoders"
    assert folders.folder_for("SomeCustomLoader", "clip_name") is None  # ambiguous without a class
    assert folders.folder_for("SomeCustomLoader", "model_name") is None
    assert folders.folder_for("LoadImage", "image") is None
