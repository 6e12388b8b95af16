"""The simulated node classes, one module per family; `build_registry()` lists them in ComfyUI's order.

A class missing here is unknown to the simulator exactly as a custom node is unknown to a ComfyUI without it.
"""

from __future__ import annotations

from comfyui_api.simulator.nodes import images, masks, media, outputs, sampling, text, video
from comfyui_api.simulator.nodes.spec import NodeSpec

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


def build_registry() -> dict[str, NodeSpec]:
    specs = {s.name: s for module in (images, masks, media, outputs, sampling, text, video) for s in module.NODES}
    ordered = {name: specs.pop(name) for name in _ORDER if name in specs}
    ordered.update(specs)
    return ordered
