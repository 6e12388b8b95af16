"""Graph and media factories for the contract suite: API-format graphs of model-free and sampler nodes, PNG bytes.

Owns the node ids and inputs the tests send. Must not talk to a server.
"""

from __future__ import annotations

import io
import uuid
import zlib
from pathlib import Path
from typing import Any

from tests.graphs import txt2img_graph


def unique_token() -> str:
    return uuid.uuid4().hex[:12]


def color_for(token: str) -> int:
    """A colour derived from a token, so graphs of different tests never share cached EmptyImage outputs."""
    return zlib.crc32(token.encode()) & 0xFFFFFF


def make_png(
    rgb: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (8, 8), alpha: int | None = None
) -> bytes:
    from PIL import Image

    mode = "RGBA" if alpha is not None else "RGB"
    color = (*rgb, alpha) if alpha is not None else rgb
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def empty_image(width: int = 64, height: int = 48, color: int = 0, batch_size: int = 1) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch_size, "color": color},
    }


def make_invert_graph(prefix: str, color: int | None = None, width: int = 64, height: int = 48) -> dict[str, Any]:
    """EmptyImage -> ImageInvert -> SaveImage; the colour defaults to one derived from the prefix."""
    return {
        "1": empty_image(width, height, color_for(prefix) if color is None else color),
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def make_output_graph(output_class: str, token: str, **inputs: Any) -> dict[str, Any]:
    """EmptyImage -> <output_class>(images=...) with extra inputs."""
    return {
        "1": empty_image(32, 24, color_for(token)),
        "2": {"class_type": output_class, "inputs": {"images": ["1", 0], **inputs}},
    }


def make_load_image_graph(image: str, prefix: str) -> dict[str, Any]:
    """LoadImage(image) -> SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def make_txt2img_graph(
    checkpoint: str, prefix: str, seed: int, steps: int = 2, size: int = 64, output_class: str = "SaveImage"
) -> dict[str, Any]:
    """CheckpointLoaderSimple -> CLIPTextEncode x2 -> KSampler -> VAEDecode -> SaveImage (node ids as ComfyUI's)."""
    return txt2img_graph(
        checkpoint,
        prefix=prefix,
        seed=seed,
        steps=steps,
        size=size,
        positive="a red fox",
        negative="blurry",
        output_class=output_class,
    )


def files_in(directory: Path | None) -> set[str]:
    """Relative paths of every file under directory (empty when unknown or missing)."""
    if directory is None or not directory.is_dir():
        return set()
    return {str(path.relative_to(directory)) for path in directory.rglob("*") if path.is_file()}
