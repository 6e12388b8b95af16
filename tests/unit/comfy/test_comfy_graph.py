"""Pure helpers on API-format graphs: table-driven, and none of them may mutate the caller's graph."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from comfyui_api.comfy.graph import (
    MediaInput,
    is_link,
    media_inputs,
    normalise_paths,
    output_node_ids,
    prefixed_filename,
    rewrite_filename_prefixes,
    with_input,
)


def make_graph(*nodes: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    return {node_id: {"class_type": class_type, "inputs": inputs} for node_id, class_type, inputs in nodes}


BASIC = make_graph(
    ("1", "EmptyImage", {"width": 64, "height": 48, "batch_size": 1, "color": 0}),
    ("2", "ImageInvert", {"image": ["1", 0]}),
    ("3", "SaveImage", {"images": ["2", 0], "filename_prefix": "cap_invert"}),
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["1", 0], True),
        (("12", 3), True),
        (["1", "0"], False),
        ([1, 0], False),  # ComfyUI rejects integer node ids in links
        (["1", True], False),
        (["1", 0, 2], False),
        ("1", False),
        (None, False),
        ([], False),
    ],
)
def test_is_link(value: Any, expected: bool) -> None:
    assert is_link(value) is expected


@pytest.mark.parametrize(
    ("graph", "object_info", "expected"),
    [
        (BASIC, None, ["3"]),
        (make_graph(("1", "EmptyImage", {}), ("2", "PreviewAny", {}), ("9", "SaveAudio", {})), None, ["2", "9"]),
        (make_graph(("1", "MyCustomSaver", {})), None, []),
        (make_graph(("1", "MyCustomSaver", {})), {"MyCustomSaver": {"output_node": True}}, ["1"]),
        (make_graph(("1", "MyCustomSaver", {})), {"MyCustomSaver": {"output_node": False}}, []),
        ({"1": "garbage", "2": {"inputs": {}}, "3": {"class_type": "SaveImage"}}, None, ["3"]),
        ({}, None, []),
    ],
)
def test_output_node_ids(graph: dict[str, Any], object_info: dict[str, Any] | None, expected: list[str]) -> None:
    assert output_node_ids(graph, object_info) == expected


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("cap_invert", "job1_cap_invert"),
        ("sub/name", "sub/job1_name"),
        ("a/b/c", "a/b/job1_c"),
        ("sub\\name", "sub/job1_name"),
        ("", "job1"),
        ("sub/", "sub/job1"),
        ("job1_already", "job1_already"),
        ("sub/job1", "sub/job1"),
        ("job10_other", "job1_job10_other"),
    ],
)
def test_prefixed_filename(prefix: str, expected: str) -> None:
    assert prefixed_filename(prefix, "job1") == expected


def test_rewrite_filename_prefixes() -> None:
    graph = make_graph(
        ("1", "SaveImage", {"filename_prefix": "out/img", "images": ["0", 0]}),
        ("2", "SaveAudio", {"audio": ["0", 0]}),  # a saver without a prefix gets one
        ("3", "SaveVideo", {"filename_prefix": ["7", 0]}),  # a linked prefix is left alone
        ("4", "PreviewImage", {"images": ["0", 0]}),  # previews have no prefix
        ("5", "SomeCustomSaver", {"filename_prefix": "x"}),  # any node with a string prefix
    )
    original = copy.deepcopy(graph)
    rewritten = rewrite_filename_prefixes(graph, "abc")
    assert graph == original
    assert rewritten["1"]["inputs"]["filename_prefix"] == "out/abc_img"
    assert rewritten["2"]["inputs"]["filename_prefix"] == "abc"
    assert rewritten["3"]["inputs"]["filename_prefix"] == ["7", 0]
    assert "filename_prefix" not in rewritten["4"]["inputs"]
    assert rewritten["5"]["inputs"]["filename_prefix"] == "abc_x"
    assert rewrite_filename_prefixes(rewritten, "abc") == rewritten  # idempotent


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("ckpt_name", "SDXL\\model.safetensors", "SDXL/model.safetensors"),
        ("lora_name", "styles\\my lora.safetensors", "styles/my lora.safetensors"),
        ("unet_name", "flux\\dev", "flux/dev"),  # path-like input name, no extension needed
        ("image", "sub\\pic.png", "sub/pic.png"),
        ("anything", "a\\b\\c.mp4", "a/b/c.mp4"),  # known extension
        ("anything", "C:\\models\\x.ckpt", "C:/models/x.ckpt"),
        ("text", "a photo\\of a cat", "a photo\\of a cat"),  # free text
        ("text", "line one\\nline two.png", "line one\\nline two.png"),
        ("pattern", "\\d+\\.png", "\\d+\\.png"),  # regex: leading backslash is not a path
        ("anything", "foo\\bar", "foo\\bar"),  # no path-like name, no known extension
        ("text_b", "see\\x.png", "see\\x.png"),
        ("prompt", "dir\\x.safetensors", "dir\\x.safetensors"),
        ("ckpt_name", "a\\\\b.safetensors", "a\\\\b.safetensors"),  # empty segment
        ("ckpt_name", "plain.safetensors", "plain.safetensors"),
        ("text", "multi\nline\\x.png", "multi\nline\\x.png"),
    ],
)
def test_normalise_paths(name: str, value: str, expected: str) -> None:
    graph = make_graph(("1", "Node", {name: value, "link": ["2", 0], "n": 3}))
    original = copy.deepcopy(graph)
    result = normalise_paths(graph)
    assert graph == original
    assert result["1"]["inputs"] == {name: expected, "link": ["2", 0], "n": 3}


def test_media_inputs() -> None:
    graph = make_graph(
        ("1", "LoadImage", {"image": "https://example.com/a.png"}),
        ("2", "LoadImageMask", {"image": "mask.png", "channel": "alpha"}),
        ("3", "LoadAudio", {"audio": "data:audio/wav;base64,AAAA"}),
        ("4", "LoadVideo", {"file": "clip.mp4"}),
        ("5", "VHS_LoadVideo", {"video": "https://x/v.mp4", "force_rate": 0}),
        ("6", "VHS_LoadVideoPath", {"video": "/abs/v.mp4"}),
        ("7", "VHS_LoadAudio", {"audio_file": "https://x/a.mp3"}),
        ("8", "VHS_LoadImages", {"directory": ["https://x/1.png", "https://x/2.png"]}),
        ("9", "SomeCustomNode", {"image": "custom.png", "audio": "not.staged"}),
        ("10", "ImageInvert", {"image": ["1", 0]}),  # a link, not media
        ("11", "LoadImage", {"image": ""}),  # empty: nothing to stage
        ("12", "VHS_LoadImagesPath", {"directory": "frames"}),
        ("13", "VHS_LoadImages", {"directory": ["ok", 3]}),  # mixed list: not media
    )
    assert media_inputs(graph) == [
        MediaInput("1", "image", "https://example.com/a.png", "image"),
        MediaInput("2", "image", "mask.png", "image"),
        MediaInput("3", "audio", "data:audio/wav;base64,AAAA", "audio"),
        MediaInput("4", "file", "clip.mp4", "video"),
        MediaInput("5", "video", "https://x/v.mp4", "video"),
        MediaInput("6", "video", "/abs/v.mp4", "video"),
        MediaInput("7", "audio_file", "https://x/a.mp3", "audio"),
        MediaInput("8", "directory", ["https://x/1.png", "https://x/2.png"], "directory"),
        MediaInput("9", "image", "custom.png", "image"),
        MediaInput("12", "directory", "frames", "directory"),
    ]


def test_with_input_copies() -> None:
    original = copy.deepcopy(BASIC)
    changed = with_input(BASIC, "1", "width", 128)
    assert original == BASIC
    assert changed["1"]["inputs"]["width"] == 128
    assert changed["2"] is BASIC["2"]  # untouched nodes are shared, not copied
    with pytest.raises(KeyError, match="no node '99'"):
        with_input(BASIC, "99", "x", 1)


def test_with_input_adds_missing_inputs_dict() -> None:
    graph = {"1": {"class_type": "SaveImage"}}
    assert with_input(graph, "1", "filename_prefix", "p") == {
        "1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "p"}}
    }
    assert graph == {"1": {"class_type": "SaveImage"}}
