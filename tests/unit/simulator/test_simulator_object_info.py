"""object_info entries against the recorded ones: byte-identical shapes for the nodes ComfyUI was captured with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyui_api.simulator.nodes import build_registry
from comfyui_api.simulator.paths import Folders
from tests.unit.simulator.simulator_support import load_capture, png_bytes

CORE = load_capture("object_info_core_nodes.json")
INDEX = load_capture("object_info_index.json")
REGISTRY = build_registry()


def recorded_folders(root: Path) -> Folders:
    """Folders holding what the recording server had: input/example.png and one checkpoint."""
    folders = Folders.create(root, root / "input", root / "output", root / "temp", root / "user", root / "models")
    folders.make_dirs()
    (folders.input_dir / "example.png").write_bytes(png_bytes())
    (folders.models_dir / "checkpoints" / "random-sd15.safetensors").write_bytes(b"x")
    return folders


@pytest.mark.parametrize("name", [n for n in CORE if not n.startswith("_")])
def test_entry_matches_the_recording(tmp_path: Path, name: str) -> None:
    assert json.dumps(REGISTRY[name].info(recorded_folders(tmp_path))) == json.dumps(CORE[name])


@pytest.mark.parametrize("name", list(REGISTRY))
def test_index_fields_match(tmp_path: Path, name: str) -> None:
    info = REGISTRY[name].info(recorded_folders(tmp_path))
    expected = INDEX[name]
    assert {k: info[k] for k in ("category", "python_module", "output_node", "output")} == {
        k: expected[k] for k in ("category", "python_module", "output_node", "output")
    }
    assert info.get("experimental", False) == expected.get("experimental", False)


def test_registry_lists_nodes_in_comfyui_order() -> None:
    recorded_order = [name for name in INDEX if name in REGISTRY]
    assert list(REGISTRY) == recorded_order


def test_combo_lists_follow_the_folders(tmp_path: Path) -> None:
    folders = recorded_folders(tmp_path)
    (folders.input_dir / "tone.wav").write_bytes(b"x")
    assert REGISTRY["LoadImage"].info(folders)["input"]["required"]["image"][0] == ["example.png"]
    assert REGISTRY["LoadImageMask"].info(folders)["input"]["required"]["image"][0] == ["example.png", "tone.wav"]
    assert REGISTRY["LoadAudio"].info(folders)["input"]["required"]["audio"][0] == ["tone.wav"]
