"""Image sources and transforms: EmptyImage, LoadImage, ImageInvert, ImageScale(By), ImageBlur, ImageCrop,
ImageBlend, ImageBatch.

Each node is its object_info description plus a function computing real pixels with numpy and Pillow.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence

from comfyui_api.simulator.nodes.imaging import from_pil, gaussian_blur, resize
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, comfy_qualname, inp

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")


def image_files(folders: Any) -> list[str]:
    return folders.input_files(content_types=("image",))


def file_digest(ctx: NodeContext, name: str) -> str:
    """IS_CHANGED of the loaders: the sha256 of the file's bytes (raises when it is gone)."""
    with open(ctx.folders.annotated_path(name), "rb") as handle:
        return hashlib.sha256(handle.read()).digest().hex()


def validate_image_name(ctx: NodeContext, image: str) -> bool | str:
    if not ctx.folders.annotated_exists(image):
        return f"Invalid image file: {image}"
    return True


@comfy_qualname("LoadImage.VALIDATE_INPUTS")
def _validate_load_image(ctx: NodeContext, image: str) -> bool | str:
    return validate_image_name(ctx, image)


def _empty_image(ctx: NodeContext, width: int, height: int, batch_size: int = 1, color: int = 0) -> tuple:
    rgb = [((color >> 16) & 0xFF) / 0xFF, ((color >> 8) & 0xFF) / 0xFF, (color & 0xFF) / 0xFF]
    image = np.empty((batch_size, height, width, 3), dtype=np.float32)
    image[...] = np.asarray(rgb, dtype=np.float32)
    return (image,)


def _load_image(ctx: NodeContext, image: str) -> tuple:
    img = Image.open(ctx.folders.annotated_path(image))
    frames: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    size: tuple[int, int] | None = None
    for frame in ImageSequence.Iterator(img):
        frame = ImageOps.exif_transpose(frame) or frame
        if frame.mode == "I":
            frame = frame.point(lambda v: v * (1 / 255))
        rgb = frame.convert("RGB")
        if size is None:
            size = rgb.size
        if rgb.size != size:
            continue
        frames.append(from_pil(rgb)[None, ...])
        if "A" in frame.getbands():
            mask = 1.0 - from_pil(frame.getchannel("A"))
        elif frame.mode == "P" and "transparency" in frame.info:
            mask = 1.0 - from_pil(frame.convert("RGBA").getchannel("A"))
        else:
            mask = np.zeros((64, 64), dtype=np.float32)
        masks.append(mask[None, ...])
    if len(frames) > 1 and img.format != "MPO":
        return (np.concatenate(frames, axis=0), np.concatenate(masks, axis=0))
    return (frames[0], masks[0])


def _invert(ctx: NodeContext, image: Any) -> tuple:
    return (1.0 - image,)


def _scale(ctx: NodeContext, image: Any, upscale_method: str, width: int, height: int, crop: str) -> tuple:
    if width == 0 and height == 0:
        return (image,)
    if width == 0:
        width = max(1, round(image.shape[2] * height / image.shape[1]))
    elif height == 0:
        height = max(1, round(image.shape[1] * width / image.shape[2]))
    return (resize(image, width, height, upscale_method, crop),)


def _scale_by(ctx: NodeContext, image: Any, upscale_method: str, scale_by: float) -> tuple:
    width = round(image.shape[2] * scale_by)
    height = round(image.shape[1] * scale_by)
    return (resize(image, width, height, upscale_method, "disabled"),)


def _blur(ctx: NodeContext, image: Any, blur_radius: int, sigma: float) -> tuple:
    if blur_radius == 0:
        return (image,)
    return (gaussian_blur(image, blur_radius, sigma),)


def _crop(ctx: NodeContext, image: Any, width: int, height: int, x: int, y: int) -> tuple:
    x = min(x, image.shape[2] - 1)
    y = min(y, image.shape[1] - 1)
    return (image[:, y : y + height, x : x + width, :],)


def _blend_mode(img1: np.ndarray, img2: np.ndarray, mode: str) -> np.ndarray:
    if mode == "normal":
        return img2
    if mode == "multiply":
        return img1 * img2
    if mode == "screen":
        return 1 - (1 - img1) * (1 - img2)
    if mode == "overlay":
        return np.where(img1 <= 0.5, 2 * img1 * img2, 1 - 2 * (1 - img1) * (1 - img2))
    if mode == "soft_light":
        g = np.where(img1 <= 0.25, ((16 * img1 - 12) * img1 + 4) * img1, np.sqrt(np.clip(img1, 0, None)))
        return np.where(img2 <= 0.5, img1 - (1 - 2 * img2) * img1 * (1 - img1), img1 + (2 * img2 - 1) * (g - img1))
    if mode == "difference":
        return img1 - img2
    raise ValueError(f"Unsupported blend mode: {mode}")


def _blend(ctx: NodeContext, image1: Any, image2: Any, blend_factor: float, blend_mode: str) -> tuple:
    if image1.shape != image2.shape:
        image2 = resize(image2, image1.shape[2], image1.shape[1], "bicubic", "center")
    blended = image1 * (1 - blend_factor) + _blend_mode(image1, image2, blend_mode) * blend_factor
    return (np.clip(blended, 0, 1).astype(np.float32),)


def _batch(ctx: NodeContext, image1: Any, image2: Any) -> tuple:
    if image1.shape[1:] != image2.shape[1:]:
        image2 = resize(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
    return (np.concatenate((image1, image2), axis=0),)


def _int(default: int, lo: int, hi: int, step: int | None = 1, **extra: Any) -> Any:
    opts: dict[str, Any] = {"default": default, "min": lo, "max": hi}
    if step is not None:
        opts["step"] = step
    opts.update(extra)
    return inp("INT", opts)


NODES = (
    NodeSpec(
        name="LoadImage",
        category="image",
        python_module="nodes",
        display_name="Load Image",
        required={"image": inp(image_files, {"image_upload": True})},
        outputs=("IMAGE", "MASK"),
        execute=_load_image,
        validate=_validate_load_image,
        is_changed=lambda ctx, image: file_digest(ctx, image),
    ),
    NodeSpec(
        name="ImageScale",
        category="image/upscaling",
        python_module="nodes",
        display_name="Upscale Image",
        required={
            "image": inp("IMAGE"),
            "upscale_method": inp(UPSCALE_METHODS),
            "width": _int(512, 0, MAX_RESOLUTION),
            "height": _int(512, 0, MAX_RESOLUTION),
            "crop": inp(("disabled", "center")),
        },
        outputs=("IMAGE",),
        execute=_scale,
    ),
    NodeSpec(
        name="ImageScaleBy",
        category="image/upscaling",
        python_module="nodes",
        display_name="Upscale Image By",
        required={
            "image": inp("IMAGE"),
            "upscale_method": inp(UPSCALE_METHODS),
            "scale_by": inp("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
        },
        outputs=("IMAGE",),
        execute=_scale_by,
    ),
    NodeSpec(
        name="ImageInvert",
        category="image",
        python_module="nodes",
        display_name="Invert Image",
        required={"image": inp("IMAGE")},
        outputs=("IMAGE",),
        execute=_invert,
    ),
    NodeSpec(
        name="ImageBatch",
        category="image",
        python_module="nodes",
        display_name="Batch Images",
        required={"image1": inp("IMAGE"), "image2": inp("IMAGE")},
        outputs=("IMAGE",),
        execute=_batch,
    ),
    NodeSpec(
        name="EmptyImage",
        category="image",
        python_module="nodes",
        required={
            "width": _int(512, 1, MAX_RESOLUTION),
            "height": _int(512, 1, MAX_RESOLUTION),
            "batch_size": _int(1, 1, 4096, step=None),
            "color": _int(0, 0, 0xFFFFFF, display="color"),
        },
        outputs=("IMAGE",),
        execute=_empty_image,
    ),
    NodeSpec(
        name="ImageBlend",
        category="image/postprocessing",
        python_module="comfy_extras.nodes_post_processing",
        v3=True,
        required={
            "image1": inp("IMAGE", {}),
            "image2": inp("IMAGE", {}),
            "blend_factor": inp("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
            "blend_mode": inp(
                "COMBO",
                {
                    "multiselect": False,
                    "options": ["normal", "multiply", "screen", "overlay", "soft_light", "difference"],
                },
            ),
        },
        outputs=("IMAGE",),
        execute=_blend,
    ),
    NodeSpec(
        name="ImageBlur",
        category="image/postprocessing",
        python_module="comfy_extras.nodes_post_processing",
        v3=True,
        required={
            "image": inp("IMAGE", {}),
            "blur_radius": inp("INT", {"default": 1, "min": 1, "max": 31, "step": 1}),
            "sigma": inp("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1}),
        },
        outputs=("IMAGE",),
        execute=_blur,
    ),
    NodeSpec(
        name="ImageCrop",
        category="image/transform",
        python_module="comfy_extras.nodes_images",
        display_name="Image Crop",
        required={
            "image": inp("IMAGE"),
            "width": _int(512, 1, MAX_RESOLUTION),
            "height": _int(512, 1, MAX_RESOLUTION),
            "x": _int(0, 0, MAX_RESOLUTION),
            "y": _int(0, 0, MAX_RESOLUTION),
        },
        outputs=("IMAGE",),
        execute=_crop,
    ),
)
