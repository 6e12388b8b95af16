"""Mask nodes: SolidMask, LoadImageMask, MaskPreview, MaskToImage, ImageToMask, InvertMask.

Masks are float32 arrays shaped [batch, height, width] in 0..1.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageOps

from comfyui_api.simulator.nodes.images import MAX_RESOLUTION, file_digest, validate_image_name
from comfyui_api.simulator.nodes.imaging import from_pil
from comfyui_api.simulator.nodes.outputs import HIDDEN, SAVE_DESCRIPTION, save_images, temp_suffix
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, comfy_qualname, inp

COLOR_CHANNELS = ("alpha", "red", "green", "blue")


def _all_input_files(folders: Any) -> list[str]:
    return folders.input_files()


@comfy_qualname("LoadImageMask.VALIDATE_INPUTS")
def _validate_load_mask(ctx: NodeContext, image: str) -> bool | str:
    return validate_image_name(ctx, image)


def _solid(ctx: NodeContext, value: float, width: int, height: int) -> tuple:
    return (np.full((1, height, width), value, dtype=np.float32),)


def _load_mask(ctx: NodeContext, image: str, channel: str) -> tuple:
    img: Image.Image = Image.open(ctx.folders.annotated_path(image))
    img = ImageOps.exif_transpose(img) or img
    if img.getbands() != ("R", "G", "B", "A"):
        if img.mode == "I":
            img = img.point(lambda v: v * (1 / 255))
        img = img.convert("RGBA")
    band = channel[0].upper()
    if band in img.getbands():
        mask = from_pil(img.getchannel(band))
        if band == "A":
            mask = 1.0 - mask
    else:
        mask = np.zeros((64, 64), dtype=np.float32)
    return (mask[None, ...],)


def _mask_preview(
    ctx: NodeContext, mask: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
) -> dict[str, Any]:
    preview = np.repeat(mask.reshape((-1, mask.shape[-2], mask.shape[-1]))[..., None], 3, axis=-1)
    return save_images(
        ctx,
        preview,
        filename_prefix + temp_suffix(ctx),
        prompt,
        extra_pnginfo,
        output_dir=ctx.folders.temp_dir,
        type_name="temp",
        compress_level=4,
    )


def _mask_to_image(ctx: NodeContext, mask: Any) -> tuple:
    return (np.repeat(mask.reshape((-1, mask.shape[-2], mask.shape[-1]))[..., None], 3, axis=-1),)


def _image_to_mask(ctx: NodeContext, image: Any, channel: str) -> tuple:
    return (image[:, :, :, ("red", "green", "blue", "alpha").index(channel)],)


def _invert_mask(ctx: NodeContext, mask: Any) -> tuple:
    return (1.0 - mask,)


NODES = (
    NodeSpec(
        name="LoadImageMask",
        category="mask",
        python_module="nodes",
        display_name="Load Image (as Mask)",
        required={"image": inp(_all_input_files, {"image_upload": True}), "channel": inp(COLOR_CHANNELS)},
        outputs=("MASK",),
        execute=_load_mask,
        validate=_validate_load_mask,
        is_changed=lambda ctx, image, channel=None: file_digest(ctx, image),
    ),
    NodeSpec(
        name="MaskToImage",
        category="mask",
        python_module="comfy_extras.nodes_mask",
        display_name="Convert Mask to Image",
        required={"mask": inp("MASK")},
        outputs=("IMAGE",),
        execute=_mask_to_image,
    ),
    NodeSpec(
        name="ImageToMask",
        category="mask",
        python_module="comfy_extras.nodes_mask",
        display_name="Convert Image to Mask",
        required={"image": inp("IMAGE"), "channel": inp(("red", "green", "blue", "alpha"))},
        outputs=("MASK",),
        execute=_image_to_mask,
    ),
    NodeSpec(
        name="SolidMask",
        category="mask",
        python_module="comfy_extras.nodes_mask",
        required={
            "value": inp("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            "width": inp("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
            "height": inp("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}),
        },
        outputs=("MASK",),
        execute=_solid,
    ),
    NodeSpec(
        name="InvertMask",
        category="mask",
        python_module="comfy_extras.nodes_mask",
        required={"mask": inp("MASK")},
        outputs=("MASK",),
        execute=_invert_mask,
    ),
    NodeSpec(
        name="MaskPreview",
        category="mask",
        python_module="comfy_extras.nodes_mask",
        output_node=True,
        description=SAVE_DESCRIPTION,
        hidden=HIDDEN,
        required={"mask": inp("MASK")},
        execute=_mask_preview,
    ),
)
