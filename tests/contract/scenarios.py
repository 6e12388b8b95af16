"""The sessions recorded as transcripts: request templates with placeholders, no recorded results.

Owns what each transcript exercises. Results are filled in by record_transcripts.py against a real ComfyUI and
checked by test_contract_transcripts.py against any target.
"""

from __future__ import annotations

import base64
from typing import Any

from tests.contract.graphs import make_png

NOT_AN_IMAGE = b"this is plain text, not an image\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _invert(prefix: str = "{{prefix}}", color: str = "{{#color}}") -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": color}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def _post(graph: dict[str, Any], client: str | None = "{{client}}", bind: str | None = "pid", **extra: Any) -> dict:
    body: dict[str, Any] = {"prompt": graph, **extra}
    if client is not None:
        body["client_id"] = client
    step: dict[str, Any] = {"op": "http", "method": "POST", "path": "/prompt", "json": body}
    if bind:
        step["bind"] = bind
    return step


def _get(path: str) -> dict[str, Any]:
    return {"op": "http", "method": "GET", "path": path}


def _upload(filename: str, data: bytes, **fields: str) -> dict[str, Any]:
    return {
        "op": "http", "method": "POST", "path": "/upload/image",
        "multipart": {"fields": fields, "files": {"image": {"filename": filename, "content_b64": _b64(data)}}},
    }  # fmt: skip


def invert_success() -> dict[str, Any]:
    return {
        "name": "invert_success",
        "description": "EmptyImage -> ImageInvert -> SaveImage with a client_id: frames, history, view, queue.",
        "placeholders": {"client": "client", "prefix": "token", "color": "int"},
        "steps": [
            {"op": "ws_open", "socket": "a", "client_id": "{{client}}"},
            {**_post(_invert()), "socket": "a"},
            _get("/history/{{pid}}"),
            _get("/view?filename={{prefix}}_00001_.png&type=output"),
            _get("/queue"),
            _get("/prompt"),
        ],
    }


def invert_cached() -> dict[str, Any]:
    return {
        "name": "invert_cached",
        "description": "The same graph twice: the second run is fully cached and reports the first run's files.",
        "placeholders": {"client": "client", "prefix": "token", "color": "int"},
        "steps": [
            {"op": "ws_open", "socket": "a", "client_id": "{{client}}"},
            {**_post(_invert(), bind="pid1"), "socket": "a"},
            {**_post(_invert(), bind="pid2"), "socket": "a"},
            _get("/history/{{pid2}}"),
        ],
    }


def runtime_error() -> dict[str, Any]:
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "{{stem}}.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{stem}}"}},
    }
    return {
        "name": "runtime_error",
        "description": "LoadImage of uploaded non-image bytes passes validation and fails at run time.",
        "placeholders": {"client": "client", "stem": "token"},
        "steps": [
            _upload("{{stem}}.png", NOT_AN_IMAGE),
            {"op": "ws_open", "socket": "a", "client_id": "{{client}}"},
            {**_post(graph), "socket": "a"},
            _get("/history/{{pid}}"),
        ],
    }


def _bad(label: str, prompt: Any = None, raw: str | None = None, body: Any = None) -> dict[str, Any]:
    step: dict[str, Any] = {"op": "http", "method": "POST", "path": "/prompt", "label": label}
    if raw is not None:
        step["raw"] = raw
    else:
        step["json"] = body if body is not None else {"prompt": prompt}
    return step


def invalid_prompts() -> dict[str, Any]:
    def with_node(node_id: str, node: dict[str, Any]) -> dict[str, Any]:
        graph = _invert("{{prefix}}", "{{#color}}")
        graph[node_id] = node
        return graph

    empty: dict[str, Any] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 1},
    }
    scale = {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "upscale_method": "magic", "width": 32,
                                                     "height": 32, "crop": "center"}}  # fmt: skip
    steps = [
        _bad("unknown class_type", with_node("2", {"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}})),
        _bad("missing class_type", with_node("2", {"inputs": {"image": ["1", 0]}})),
        _bad("required input missing", with_node("2", {"class_type": "ImageInvert", "inputs": {}})),
        _bad("string for INT", with_node("1", {**empty, "inputs": {**empty["inputs"], "width": "abc"}})),
        _bad("below min", with_node("1", {**empty, "inputs": {**empty["inputs"], "width": 0}})),
        _bad("above max", with_node("1", {**empty, "inputs": {**empty["inputs"], "width": 99999}})),
        _bad("value not in list", with_node("2", scale)),
        _bad("LoadImage missing file", with_node("1", {"class_type": "LoadImage", "inputs": {"image": "nope.png"}})),
        _bad("link to missing node", with_node("2", {"class_type": "ImageInvert", "inputs": {"image": ["99", 0]}})),
        _bad("link index out of range", with_node("2", {"class_type": "ImageInvert", "inputs": {"image": ["1", 5]}})),
        _bad("link with int node id", with_node("2", {"class_type": "ImageInvert", "inputs": {"image": [1, 0]}})),
        _bad("node without inputs", with_node("2", {"class_type": "ImageInvert"})),
        _bad(
            "type mismatch",
            {
                "1": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "{{prefix}}"}},
            },
        ),
        _bad("no output node", {"1": empty}),
        _bad("empty prompt", {}),
        _bad("no prompt key", body={"client_id": "x"}),
        _bad("JSON array body", body=[1, 2]),
        _bad("prompt is a list", body={"prompt": [1, 2]}),
        _bad("malformed JSON", raw="{not json"),
        _bad("empty body", raw=""),
        _bad(
            "partial acceptance",
            {**_invert(), "4": {"class_type": "SaveImage", "inputs": {"images": ["99", 0], "filename_prefix": "x"}}},
        ),
    ]
    return {
        "name": "invalid_prompts",
        "description": "Every POST /prompt rejection: status, error type, node_errors shape, text 500s.",
        "placeholders": {"prefix": "token", "color": "int"},
        "steps": steps,
    }


def upload_sequence() -> dict[str, Any]:
    red, blue, green = make_png((255, 0, 0)), make_png((0, 0, 255)), make_png((0, 255, 0))
    return {
        "name": "upload_sequence",
        "description": "Upload naming: reuse by content hash, (n) suffixes, overwrite, subfolder, type, rejections.",
        "placeholders": {"stem": "token"},
        "steps": [
            _upload("{{stem}}.png", red),
            _upload("{{stem}}.png", red),
            _upload("{{stem}}.png", blue),
            _upload("{{stem}}.png", green),
            _upload("{{stem}}.png", blue),
            _upload("{{stem}}.png", green, overwrite="true"),
            _upload("{{stem}}.png", red, subfolder="{{stem}}_dir/deeper"),
            _upload("{{stem}}.png", red, type="temp"),
            _upload("{{stem}}.png", red, subfolder="../.."),
            _upload("../{{stem}}.png", red),
            {"op": "http", "method": "POST", "path": "/upload/image",
             "multipart": {"fields": {"subfolder": "x"}, "files": {}}},
            _get("/view?filename={{stem}}.png&type=input"),
            _get("/view?filename={{stem}}.png&type=input&subfolder={{stem}}_dir/deeper"),
            _get("/view?filename={{stem}} (1).png&type=input&preview=jpeg;50"),
            _get("/view?filename={{stem}}.png&type=input&subfolder=../../etc"),
            _get("/view?filename=../{{stem}}.png&type=input"),
        ],
    }  # fmt: skip


def save_image_websocket() -> dict[str, Any]:
    def graph(color: str) -> dict[str, Any]:
        return {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 24, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
        }

    return {
        "name": "save_image_websocket",
        "description": "SaveImageWebsocket: a type 1 frame to a legacy socket, a type 4 frame after feature_flags.",
        "placeholders": {"client_a": "client", "client_b": "client", "color_a": "int", "color_b": "int"},
        "steps": [
            {"op": "ws_open", "socket": "a", "client_id": "{{client_a}}"},
            {**_post(graph("{{#color_a}}"), client="{{client_a}}", bind="pid_a"), "socket": "a"},
            {"op": "ws_open", "socket": "b", "client_id": "{{client_b}}", "feature_flags": True},
            {**_post(graph("{{#color_b}}"), client="{{client_b}}", bind="pid_b"), "socket": "b"},
            _get("/history/{{pid_a}}"),
            {"op": "ws_close", "socket": "a"},
            {"op": "ws_close", "socket": "b"},
        ],
    }


def txt2img_runs() -> dict[str, Any]:
    def graph(seed: str) -> dict[str, Any]:
        return {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "{{checkpoint}}"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox {{prefix}}", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {
                "seed": seed, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "{{prefix}}"}},
        }  # fmt: skip

    return {
        "name": "txt2img_runs",
        "description": "A 2-step KSampler run, its cached resubmission, then a new seed (only sampler onwards re-run).",
        "placeholders": {"client": "client", "prefix": "token", "seed": "int", "seed2": "int"},
        "requires_checkpoint": True,
        "steps": [
            {"op": "ws_open", "socket": "a", "client_id": "{{client}}"},
            {**_post(graph("{{#seed}}"), bind="pid1"), "socket": "a"},
            {**_post(graph("{{#seed}}"), bind="pid2"), "socket": "a"},
            {**_post(graph("{{#seed2}}"), bind="pid3"), "socket": "a"},
            _get("/history/{{pid3}}"),
        ],
    }


def all_scenarios() -> list[dict[str, Any]]:
    return [invert_success(), invert_cached(), runtime_error(), invalid_prompts(), upload_sequence(),
            save_image_websocket(), txt2img_runs()]  # fmt: skip


# The node classes whose /object_info entries must match a real ComfyUI 0.3.64 (the simulator implements these).
OBJECT_INFO_NODES = (
    "KSampler", "CheckpointLoaderSimple", "CLIPTextEncode", "VAEDecode", "VAEEncode", "EmptyLatentImage", "SaveImage",
    "PreviewImage", "LoadImage", "LoadImageMask", "ImageScale", "ImageScaleBy", "ImageInvert", "ImageBatch",
    "EmptyImage", "SaveLatent", "ImageBlend", "ImageBlur", "MaskToImage", "ImageToMask", "SolidMask", "InvertMask",
    "MaskPreview", "ImageCrop", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus",
    "LoadAudio", "PreviewAudio", "EmptyAudio", "SaveWEBM", "SaveVideo", "CreateVideo", "PrimitiveString",
    "PrimitiveStringMultiline", "PrimitiveInt", "PrimitiveFloat", "PrimitiveBoolean", "PreviewAny",
    "StringConcatenate", "SaveImageWebsocket",
)  # fmt: skip
