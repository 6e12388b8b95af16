"""The simulated node classes, one module per family; `build_registry()` lists them in ComfyUI's order.

A class missing here is unknown to the simulator exactly as a custom node is unknown to a ComfyUI without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from comfyui_api.simulator.nodes import images, masks, media, outputs, sampling, text, video
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec

# The order in which ComfyUI 0.3.64 lists these classes in /object_info.
_ORDER = (
    "KSampler",
    "CheckpointLoaderSimple",
    "CLIPTextEncode",
    "VAEDecode",
    "VAEEncode",
    "EmptyLatentImage",
    "SaveImage",
    "PreviewImage",
    "LoadImage",
    "LoadImageMask",
    "ImageScale",
    "ImageScaleBy",
    "ImageInvert",
    "ImageBatch",
    "EmptyImage",
    "SaveLatent",
    "ImageBlend",
    "ImageBlur",
    "MaskToImage",
    "ImageToMask",
    "SolidMask",
    "InvertMask",
    "MaskPreview",
    "ImageCrop",
    "SaveAnimatedWEBP",
    "SaveAnimatedPNG",
    "SaveAudio",
    "SaveAudioMP3",
    "SaveAudioOpus",
    "LoadAudio",
    "PreviewAudio",
    "EmptyAudio",
    "SaveWEBM",
    "SaveVideo",
    "CreateVideo",
    "PrimitiveString",
    "PrimitiveStringMultiline",
    "PrimitiveInt",
    "PrimitiveFloat",
    "PrimitiveBoolean",
    "PreviewAny",
    "StringConcatenate",
    "SaveImageWebsocket",
)


# ComfyUI 0.33 gave these output nodes a pass-through output (type, name, the input passed through), so they can sit
# mid-graph.
_PASSTHROUGH: dict[str, tuple[str, str, str]] = {
    "SaveImage": ("IMAGE", "images", "images"),
    "PreviewImage": ("IMAGE", "images", "images"),
    "SaveAudio": ("AUDIO", "audio", "audio"),
    "PreviewAny": ("STRING", "STRING", "source"),
    "SaveVideo": ("VIDEO", "video", "video"),
}
# What 0.33 says of these nodes beyond the new keys (captured: SaveImage, EmptyImage; the rest as listed in
# CHANGES-0.33).
_MODERN_DETAILS: dict[str, dict[str, Any]] = {
    "SaveImage": {
        "search_aliases": ("save", "save image", "export image", "output image", "write image", "download"),
        "essentials_category": "Basics",
    },
    "EmptyImage": {"display_name": "Empty Image"},
    "ImageInvert": {"display_name": "Invert Image Colors"},
    "PrimitiveString": {"display_name": "Text"},
    "KSampler": {"category": "model/sampling"},
}


def _passing_through(execute: Callable[..., Any], input_name: str) -> Callable[..., Any]:
    def run(ctx: NodeContext, **kwargs: Any) -> Any:
        returned = execute(ctx, **kwargs)
        ui = returned.get("ui") if isinstance(returned, dict) else None
        return {"ui": ui or {}, "result": (kwargs.get(input_name),)}

    return run


def _modernised(spec: NodeSpec) -> NodeSpec:
    changes: dict[str, Any] = {"modern": True, **_MODERN_DETAILS.get(spec.name, {})}
    if spec.name in _PASSTHROUGH:
        kind, name, input_name = _PASSTHROUGH[spec.name]
        changes.update(outputs=(kind,), output_names=(name,), execute=_passing_through(spec.execute, input_name))
    return dataclasses.replace(spec, **changes)


def build_registry(*, modern: bool = False) -> dict[str, NodeSpec]:
    """The node classes in ComfyUI's order; `modern`: as ComfyUI >= 0.33 describes them (new object_info keys,
    pass-through outputs on output nodes)."""
    specs = {s.name: s for module in (images, masks, media, outputs, sampling, text, video) for s in module.NODES}
    ordered = {name: specs.pop(name) for name in _ORDER if name in specs}
    ordered.update(specs)
    if modern:
        ordered = {name: _modernised(spec) for name, spec in ordered.items()}
    return ordered
