"""Pixel helpers shared by the image nodes: array <-> Pillow conversion, resizing, PNG metadata.

Images are float32 arrays shaped [batch, height, width, channels] in 0..1 and masks [batch, height, width],
as ComfyUI's tensors are. Must not touch folders or the network.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

_RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def to_pil(frame: np.ndarray) -> Image.Image:
    """One [H, W, C] frame in 0..1 as an 8-bit Pillow image (C = 1, 3 or 4)."""
    data = np.clip(255.0 * np.asarray(frame, dtype=np.float32), 0, 255).astype(np.uint8)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return Image.fromarray(data)


def from_pil(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32) / 255.0


def resize(images: np.ndarray, width: int, height: int, method: str, crop: str) -> np.ndarray:
    """ComfyUI's common_upscale on [B, H, W, C]: optional centre crop to the new aspect, then resample."""
    _, old_h, old_w, channels = images.shape
    if crop == "center" and old_h and old_w and width and height:
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        images = images[:, y : old_h - y, x : old_w - x, :]
    resample = _RESAMPLE.get(method, Image.Resampling.BILINEAR)
    out = np.empty((images.shape[0], height, width, channels), dtype=np.float32)
    for b in range(images.shape[0]):
        for c in range(channels):
            plane = Image.fromarray(np.ascontiguousarray(images[b, :, :, c], dtype=np.float32), mode="F")
            out[b, :, :, c] = np.asarray(plane.resize((width, height), resample), dtype=np.float32)
    return out


def png_metadata(prompt: Any, extra_pnginfo: Any, disabled: bool) -> PngInfo | None:
    """tEXt chunks `prompt` and one per extra_pnginfo key (e.g. `workflow`), JSON-encoded."""
    if disabled:
        return None
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            info.add_text(key, json.dumps(value))
    return info


def gaussian_blur(images: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    """ImageBlur's kernel: a (2r+1)^2 Gaussian over [-1, 1], reflect padding, per channel."""
    size = radius * 2 + 1
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    kernel = np.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    out = np.zeros_like(images, dtype=np.float32)
    height, width = images.shape[1], images.shape[2]
    for dy in range(size):
        for dx in range(size):
            out += kernel[dy, dx] * padded[:, dy : dy + height, dx : dx + width, :]
    return out
