"""Image conversion of job outputs (`convert_output: {format, options}`) to JPEG, WebP or PNG with Pillow.

Validates each format's own options (400 naming the option), encodes in a worker thread, writes a new file and
returns an updated OutputFile. Video, audio and animated images are left unchanged with a note. No network.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageColor, PngImagePlugin, UnidentifiedImageError

from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.model import ConvertSpec, OutputFile


@dataclass(frozen=True)
class _Format:
    extension: str
    content_type: str
    pillow_name: str


FORMATS: Mapping[str, _Format] = {
    "jpeg": _Format(".jpg", "image/jpeg", "JPEG"),
    "webp": _Format(".webp", "image/webp", "WEBP"),
    "png": _Format(".png", "image/png", "PNG"),
}
_FORMAT_ALIASES = {"jpg": "jpeg"}
_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def _subsampling(value: Any) -> str:
    if value not in _SUBSAMPLING:
        raise ValueError(f"must be one of: {', '.join(_SUBSAMPLING)}")
    return str(value)


def _color(value: Any) -> tuple[int, int, int]:
    try:
        red, green, blue = ImageColor.getrgb(str(value))[:3]
    except ValueError:
        raise ValueError("must be a colour such as '#ffffff' or 'white'") from None
    return (red, green, blue)


def _near_lossless(value: Any) -> int | bool:
    # true: the level comes from `quality` (compat: sharp); an integer: cwebp's -near_lossless level (100 = off).
    if isinstance(value, bool):
        return value
    return _integer(0, 100)(value)


# Per format: option name -> (canonical name, checker). Aliases are the camelCase names of sharp (compat: salad).
_OPTIONS: Mapping[str, Mapping[str, tuple[str, Callable[[Any], Any]]]] = {
    "jpeg": {
        "quality": ("quality", _integer(1, 100)),
        "progressive": ("progressive", _boolean),
        "chroma_subsampling": ("chroma_subsampling", _subsampling),
        "chromaSubsampling": ("chroma_subsampling", _subsampling),
        "optimize": ("optimize", _boolean),
        "optimiseCoding": ("optimize", _boolean),
        "optimizeCoding": ("optimize", _boolean),
        "background": ("background", _color),
    },
    "webp": {
        "quality": ("quality", _integer(0, 100)),
        "lossless": ("lossless", _boolean),
        "near_lossless": ("near_lossless", _near_lossless),
        "nearLossless": ("near_lossless", _near_lossless),
        "alpha_quality": ("alpha_quality", _integer(0, 100)),
        "alphaQuality": ("alpha_quality", _integer(0, 100)),
        "method": ("method", _integer(0, 6)),
        "effort": ("method", _integer(0, 6)),
        "exact": ("exact", _boolean),
    },
    "png": {
        "compress_level": ("compress_level", _integer(0, 9)),
        "compressionLevel": ("compress_level", _integer(0, 9)),
        "optimize": ("optimize", _boolean),
    },
}


def normalize_spec(spec: ConvertSpec, *, field: str = "convert_output") -> tuple[str, dict[str, Any]]:
    """(canonical format, canonical options); InvalidRequest naming the field (`convert_output.options.quality`)."""
    fmt = _FORMAT_ALIASES.get(str(spec.format).lower(), str(spec.format).lower())
    if fmt not in FORMATS:
        raise InvalidRequest(f"{field}.format must be one of: {', '.join(FORMATS)}", field=f"{field}.format")
    if not isinstance(spec.options, Mapping):
        raise InvalidRequest(f"{field}.options must be an object", field=f"{field}.options")
    known = _OPTIONS[fmt]
    options: dict[str, Any] = {}
    for name, value in spec.options.items():
        where = f"{field}.options.{name}"
        if name not in known:
            names = ", ".join(sorted(n for n, (canonical, _) in known.items() if n == canonical))
            raise InvalidRequest(f"{where} is not an option of {fmt}; known: {names}", field=where)
        canonical, check = known[name]
        try:
            options[canonical] = check(value)
        except ValueError as exc:
            raise InvalidRequest(f"{where} {exc}", field=where) from None
    return fmt, options


def validate_convert_spec(spec: ConvertSpec, *, field: str = "convert_output") -> None:
    normalize_spec(spec, field=field)


def near_lossless_bits(level: int) -> int:
    """libwebp's mapping from a near-lossless level (100 = lossless) to the low bits it may change."""
    return max(0, min(5, 5 - level // 20))


def _quantize(image: Image.Image, bits: int) -> Image.Image:
    """Round colour channels to multiples of 2**bits (alpha untouched): Pillow has no near-lossless switch, so the
    preprocessing libwebp would do is done here and the result encoded losslessly."""
    if bits <= 0:
        return image
    step = 1 << bits
    table = [min(255, ((value + step // 2) // step) * step) for value in range(256)]
    bands = image.getbands()
    lut: list[int] = []
    for band in bands:
        lut += list(range(256)) if band == "A" else table
    return image.point(lut)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def _jpeg_image(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if _has_alpha(image):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image if image.mode in ("RGB", "L", "CMYK") else image.convert("RGB")


def _encode(source: Path, target: Path, fmt: str, options: dict[str, Any]) -> None:
    with Image.open(source) as opened:
        opened.load()
        image: Image.Image = opened
        params: dict[str, Any] = {}
        if opened.info.get("icc_profile"):
            params["icc_profile"] = opened.info["icc_profile"]
        if fmt == "jpeg":
            image = _jpeg_image(image, options.pop("background", (255, 255, 255)))
            if "chroma_subsampling" in options:
                params["subsampling"] = _SUBSAMPLING[options.pop("chroma_subsampling")]
            params.update(options)
        elif fmt == "webp":
            image = image.convert("RGBA" if _has_alpha(image) else "RGB")
            near = options.pop("near_lossless", None)
            if near is not None and near is not False:
                level = options.pop("quality", 60) if near is True else near
                image = _quantize(image, near_lossless_bits(level))
                options["lossless"] = True
            params.update(options)
        else:
            if image.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
                image = image.convert("RGBA" if _has_alpha(image) else "RGB")
            text = {k: v for k, v in opened.info.items() if isinstance(k, str) and isinstance(v, str)}
            if text and opened.format == "PNG":
                info = PngImagePlugin.PngInfo()  # keep ComfyUI's embedded workflow on png -> png
                for key, value in text.items():
                    info.add_text(key, value)
                params["pnginfo"] = info
            params.update(options)
        image.save(target, FORMATS[fmt].pillow_name, **params)


def _convert_blocking(path: Path, dest_dir: Path, filename: str, fmt: str, options: dict[str, Any]) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    partial = dest_dir / f".convert-{uuid.uuid4().hex}{FORMATS[fmt].extension}"
    try:
        _encode(path, partial, fmt, options)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _is_animated(path: Path) -> bool:
    with Image.open(path) as image:
        return bool(getattr(image, "is_animated", False))


async def convert_output(output: OutputFile, spec: ConvertSpec, *, dest_dir: Path | None = None) -> OutputFile:
    """Convert an image output to `spec.format` with its options; returns a new OutputFile (new path, filename
    extension, content type and size). Non-images and animated images come back unchanged with a note. The
    original file is left in place unless the new file has the same path."""
    fmt, options = normalize_spec(spec)
    if output.kind != "image":
        return dataclasses.replace(output, note=f"convert_output applies to still images; {output.kind} left as is")
    if output.path is None:
        raise ValueError(f"output {output.filename!r} has no local file to convert")
    try:
        if await asyncio.to_thread(_is_animated, output.path):
            return dataclasses.replace(output, note="animated image left as is; convert_output applies to stills")
    except (UnidentifiedImageError, OSError) as exc:
        return dataclasses.replace(output, note=f"not converted: could not read the image ({exc})")
    spec_format = FORMATS[fmt]
    filename = Path(output.filename).stem + spec_format.extension
    directory = dest_dir if dest_dir is not None else output.path.parent
    local_name = output.path.stem + spec_format.extension  # keeps the local file's job prefix
    target = await asyncio.to_thread(_convert_blocking, output.path, directory, local_name, fmt, dict(options))
    return dataclasses.replace(
        output,
        path=target,
        filename=filename,
        content_type=spec_format.content_type,
        size_bytes=target.stat().st_size,
    )
