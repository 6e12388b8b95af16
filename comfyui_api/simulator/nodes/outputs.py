"""Image and latent output nodes: SaveImage, PreviewImage, SaveAnimatedWEBP, SaveAnimatedPNG, SaveLatent and
SaveImageWebsocket (the websocket-only saver shipped in ComfyUI's custom_nodes folder).

Owns output naming (`<prefix>_00001_.png`, temp previews `ComfyUI_temp_<5 letters>_...`) and file formats.
"""

from __future__ import annotations

import json
import random
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL.PngImagePlugin import PngInfo

from comfyui_api.simulator.nodes.imaging import png_metadata, to_pil
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, inp

HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
PREFIX_TOOLTIP = (
    "The prefix for the file to save. This may include formatting information such as %date:yyyy-MM-dd% "
    "or %Empty Latent Image.width% to include values from nodes."
)
SAVE_DESCRIPTION = "Saves the input images to your ComfyUI output directory."
# ComfyUI's alphabet for temp names (it has no "w" and two "p").
_TEMP_LETTERS = "abcdefghijklmnopqrstupvxyz"
WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def temp_suffix(ctx: NodeContext) -> str:
    """`_temp_xxxxx`, chosen once per node object and kept while the node stays in the graph."""
    if "prefix_append" not in ctx.state:
        ctx.state["prefix_append"] = "_temp_" + "".join(random.choice(_TEMP_LETTERS) for _ in range(5))
    return str(ctx.state["prefix_append"])


def save_images(
    ctx: NodeContext,
    images: Any,
    filename_prefix: str,
    prompt: Any,
    extra_pnginfo: Any,
    *,
    output_dir: Path,
    type_name: str,
    compress_level: int,
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, output_dir, images[0].shape[1], images[0].shape[0])
    counter = where.counter
    results = []
    for batch_number, frame in enumerate(images):
        metadata = png_metadata(prompt, extra_pnginfo, ctx.config.disable_metadata)
        stem = where.filename.replace("%batch_num%", str(batch_number))
        file = f"{stem}_{counter:05}_.png"
        to_pil(frame).save(where.folder / file, pnginfo=metadata, compress_level=compress_level)
        results.append({"filename": file, "subfolder": where.subfolder, "type": type_name})
        counter += 1
    return {"ui": {"images": results}}


def _save_image(
    ctx: NodeContext, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
) -> dict[str, Any]:
    return save_images(
        ctx,
        images,
        filename_prefix,
        prompt,
        extra_pnginfo,
        output_dir=ctx.folders.output_dir,
        type_name="output",
        compress_level=4,
    )


def _preview_image(
    ctx: NodeContext, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
) -> dict[str, Any]:
    return save_images(
        ctx,
        images,
        filename_prefix + temp_suffix(ctx),
        prompt,
        extra_pnginfo,
        output_dir=ctx.folders.temp_dir,
        type_name="temp",
        compress_level=1,
    )


def _save_webp(
    ctx: NodeContext,
    images: Any,
    fps: float,
    filename_prefix: str,
    lossless: bool,
    quality: int,
    method: str,
    prompt: Any = None,
    extra_pnginfo: Any = None,
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, ctx.folders.output_dir, images[0].shape[1], images[0].shape[0])
    frames = [to_pil(frame) for frame in images]
    exif = frames[0].getexif()
    if not ctx.config.disable_metadata:
        if prompt is not None:
            exif[0x0110] = f"prompt:{json.dumps(prompt)}"
        if isinstance(extra_pnginfo, dict):
            tag = 0x010F
            for key, value in extra_pnginfo.items():
                exif[tag] = f"{key}:{json.dumps(value)}"
                tag -= 1
    file = f"{where.filename}_{where.counter:05}_.webp"
    frames[0].save(
        where.folder / file,
        save_all=True,
        duration=int(1000.0 / fps),
        append_images=frames[1:],
        exif=exif,
        lossless=lossless,
        quality=quality,
        method=WEBP_METHODS.get(method),
    )
    result = {"filename": file, "subfolder": where.subfolder, "type": "output"}
    return {"ui": {"images": [result], "animated": (len(frames) != 1,)}}


def _save_apng(
    ctx: NodeContext,
    images: Any,
    fps: float,
    compress_level: int,
    filename_prefix: str = "ComfyUI",
    prompt: Any = None,
    extra_pnginfo: Any = None,
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, ctx.folders.output_dir, images[0].shape[1], images[0].shape[0])
    frames = [to_pil(frame) for frame in images]
    metadata = None
    if not ctx.config.disable_metadata:
        metadata = PngInfo()
        if prompt is not None:
            metadata.add(b"comf", b"prompt\0" + json.dumps(prompt).encode("latin-1"), after_idat=True)
        if isinstance(extra_pnginfo, dict):
            for key, value in extra_pnginfo.items():
                metadata.add(
                    b"comf", key.encode("latin-1") + b"\0" + json.dumps(value).encode("latin-1"), after_idat=True
                )
    file = f"{where.filename}_{where.counter:05}_.png"
    frames[0].save(
        where.folder / file,
        pnginfo=metadata,
        compress_level=compress_level,
        save_all=True,
        duration=int(1000.0 / fps),
        append_images=frames[1:],
    )
    return {"ui": {"images": [{"filename": file, "subfolder": where.subfolder, "type": "output"}], "animated": (True,)}}


def _save_websocket(ctx: NodeContext, images: Any) -> dict[str, Any]:
    total = images.shape[0]
    for step, frame in enumerate(images):
        ctx.progress.update(step, total, ("PNG", to_pil(frame), None))
    return {}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None) -> None:
    """A minimal safetensors writer (float32 tensors only), enough for .latent files and test checkpoints."""
    header: dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def _save_latent(
    ctx: NodeContext, samples: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, ctx.folders.output_dir)
    metadata = None
    if not ctx.config.disable_metadata:
        metadata = {"prompt": json.dumps(prompt) if prompt is not None else ""}
        if isinstance(extra_pnginfo, dict):
            metadata.update({key: json.dumps(value) for key, value in extra_pnginfo.items()})
    file = f"{where.filename}_{where.counter:05}_.latent"
    tensors = {"latent_tensor": samples["samples"], "latent_format_version_0": np.zeros((0,), dtype=np.float32)}
    write_safetensors(where.folder / file, tensors, metadata)
    return {"ui": {"latents": [{"filename": file, "subfolder": where.subfolder, "type": "output"}]}}


NODES = (
    NodeSpec(
        name="SaveImage",
        category="image",
        python_module="nodes",
        display_name="Save Image",
        description=SAVE_DESCRIPTION,
        output_node=True,
        hidden=HIDDEN,
        required={
            "images": inp("IMAGE", {"tooltip": "The images to save."}),
            "filename_prefix": inp("STRING", {"default": "ComfyUI", "tooltip": PREFIX_TOOLTIP}),
        },
        execute=_save_image,
    ),
    NodeSpec(
        name="PreviewImage",
        category="image",
        python_module="nodes",
        display_name="Preview Image",
        description=SAVE_DESCRIPTION,
        output_node=True,
        hidden=HIDDEN,
        required={"images": inp("IMAGE")},
        execute=_preview_image,
    ),
    NodeSpec(
        name="SaveLatent",
        category="_for_testing",
        python_module="nodes",
        output_node=True,
        hidden=HIDDEN,
        required={"samples": inp("LATENT"), "filename_prefix": inp("STRING", {"default": "latents/ComfyUI"})},
        execute=_save_latent,
    ),
    NodeSpec(
        name="SaveAnimatedWEBP",
        category="image/animation",
        python_module="comfy_extras.nodes_images",
        output_node=True,
        hidden=HIDDEN,
        required={
            "images": inp("IMAGE"),
            "filename_prefix": inp("STRING", {"default": "ComfyUI"}),
            "fps": inp("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            "lossless": inp("BOOLEAN", {"default": True}),
            "quality": inp("INT", {"default": 80, "min": 0, "max": 100}),
            "method": inp(tuple(WEBP_METHODS)),
        },
        execute=_save_webp,
    ),
    NodeSpec(
        name="SaveAnimatedPNG",
        category="image/animation",
        python_module="comfy_extras.nodes_images",
        output_node=True,
        hidden=HIDDEN,
        required={
            "images": inp("IMAGE"),
            "filename_prefix": inp("STRING", {"default": "ComfyUI"}),
            "fps": inp("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            "compress_level": inp("INT", {"default": 4, "min": 0, "max": 9}),
        },
        execute=_save_apng,
    ),
    NodeSpec(
        name="SaveImageWebsocket",
        category="api/image",
        python_module="custom_nodes.websocket_image_save",
        output_node=True,
        required={"images": inp("IMAGE")},
        execute=_save_websocket,
        # Never cached: its "fingerprint" is the clock, as in the original custom node.
        is_changed=lambda ctx, images=None: time.time(),
    ),
)
