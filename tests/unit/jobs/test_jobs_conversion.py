"""Image conversion of outputs: option validation naming the field, and each format's options checked on the files
they produce (format, quality vs size, progressive flag, chroma subsampling, lossless pixels, compress level)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, JpegImagePlugin, PngImagePlugin

from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.conversion import convert_output, near_lossless_bits, validate_convert_spec
from comfyui_api.jobs.model import ConvertSpec, OutputFile


def noisy_image(mode: str = "RGB", size: tuple[int, int] = (96, 64), seed: int = 7) -> Image.Image:
    """Gradients plus noise: compresses differently at different settings, unlike a flat colour."""
    rng = random.Random(seed)
    image = Image.new(mode, size)
    width, height = size
    pixels = []
    for y in range(height):
        for x in range(width):
            base = (x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height))
            pixel = tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in base)
            pixels.append((*pixel, 255 if x < width // 2 else 90) if mode == "RGBA" else pixel)
    image.putdata(pixels)
    return image


def names_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def png_output(tmp_path: Path, image: Image.Image, name: str = "ComfyUI_00001_.png", **save: Any) -> OutputFile:
    path = tmp_path / name
    image.save(path, "PNG", **save)
    return OutputFile("9", "image", name, "", "output", "image/png", path.stat().st_size, path=path)


async def convert(output: OutputFile, fmt: str, tmp_path: Path, tag: str, **options: Any) -> OutputFile:
    return await convert_output(output, ConvertSpec(fmt, options), dest_dir=tmp_path / tag)


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ConvertSpec("gif"), "convert_output.format"),
        (ConvertSpec("jpeg", {"quality": 0}), "convert_output.options.quality"),
        (ConvertSpec("jpeg", {"quality": "high"}), "convert_output.options.quality"),
        (ConvertSpec("jpeg", {"lossless": True}), "convert_output.options.lossless"),
        (ConvertSpec("jpeg", {"chroma_subsampling": "4:1:1"}), "convert_output.options.chroma_subsampling"),
        (ConvertSpec("jpeg", {"progressive": "yes"}), "convert_output.options.progressive"),
        (ConvertSpec("jpeg", {"background": "not-a-colour"}), "convert_output.options.background"),
        (ConvertSpec("webp", {"method": 7}), "convert_output.options.method"),
        (ConvertSpec("webp", {"near_lossless": 101}), "convert_output.options.near_lossless"),
        (ConvertSpec("webp", {"alphaQuality": -1}), "convert_output.options.alphaQuality"),
        (ConvertSpec("png", {"compress_level": 10}), "convert_output.options.compress_level"),
        (ConvertSpec("png", {"quality": 80}), "convert_output.options.quality"),
    ],
)
def test_invalid_specs_name_the_field(spec: ConvertSpec, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_convert_spec(spec)
    assert caught.value.field == field


def test_valid_specs_and_aliases_pass() -> None:
    validate_convert_spec(ConvertSpec("JPG", {"quality": 80, "chromaSubsampling": "4:4:4", "optimiseCoding": True}))
    validate_convert_spec(ConvertSpec("webp", {"nearLossless": True, "effort": 6, "alpha_quality": 50}))
    validate_convert_spec(ConvertSpec("png", {"compressionLevel": 9, "optimize": False}))


async def test_jpeg_conversion_updates_the_output(tmp_path: Path) -> None:
    source = png_output(tmp_path, noisy_image())

    converted = await convert(source, "jpeg", tmp_path, "j", quality=85)

    assert converted.filename == "ComfyUI_00001_.jpg"
    assert converted.content_type == "image/jpeg"
    assert converted.path == tmp_path / "j" / "ComfyUI_00001_.jpg"
    assert converted.size_bytes == converted.path.stat().st_size
    assert source.path is not None and source.path.exists()  # the original is left for its owner
    with Image.open(converted.path) as image:
        assert image.format == "JPEG" and image.size == (96, 64)


async def test_jpeg_quality_changes_size(tmp_path: Path) -> None:
    source = png_output(tmp_path, noisy_image())

    low = await convert(source, "jpeg", tmp_path, "low", quality=15)
    high = await convert(source, "jpeg", tmp_path, "high", quality=95)

    assert low.size_bytes * 2 < high.size_bytes


async def test_jpeg_progressive_flag_and_subsampling(tmp_path: Path) -> None:
    source = png_output(tmp_path, noisy_image())

    progressive = await convert(source, "jpeg", tmp_path, "p", progressive=True, chroma_subsampling="4:4:4")
    baseline = await convert(source, "jpeg", tmp_path, "b", chroma_subsampling="4:2:0", optimize=True)

    assert progressive.path is not None and baseline.path is not None
    with Image.open(progressive.path) as image:
        assert image.info.get("progressive") or image.info.get("progression")
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(image) == 0
    with Image.open(baseline.path) as image:
        assert not (image.info.get("progressive") or image.info.get("progression"))
        assert isinstance(image, JpegImagePlugin.JpegImageFile)
        assert JpegImagePlugin.get_sampling(image) == 2


async def test_jpeg_flattens_alpha_onto_the_background(tmp_path: Path) -> None:
    image = Image.new("RGBA", (32, 16), (0, 0, 255, 255))
    image.paste((0, 0, 255, 0), (0, 0, 16, 16))  # the left half is fully transparent
    source = png_output(tmp_path, image)

    converted = await convert(source, "jpeg", tmp_path, "a", quality=100, background="#ff0000")

    assert converted.path is not None
    with Image.open(converted.path) as result:
        assert result.mode == "RGB"
        red, _, blue = result.getpixel((4, 8))  # type: ignore[misc]
        assert red > 200 and blue < 60
        red, _, blue = result.getpixel((27, 8))  # type: ignore[misc]
        assert blue > 200 and red < 60


async def test_webp_lossless_round_trips_identical_pixels(tmp_path: Path) -> None:
    original = noisy_image("RGBA")
    source = png_output(tmp_path, original)

    converted = await convert(source, "webp", tmp_path, "l", lossless=True, method=6)

    assert converted.filename.endswith(".webp") and converted.content_type == "image/webp"
    assert converted.path is not None
    with Image.open(converted.path) as result:
        assert result.format == "WEBP" and result.mode == "RGBA"
        assert result.tobytes() == original.tobytes()


async def test_webp_near_lossless_stays_within_its_bound(tmp_path: Path) -> None:
    original = noisy_image()
    source = png_output(tmp_path, original)

    near = await convert(source, "webp", tmp_path, "n", near_lossless=40)
    exact = await convert(source, "webp", tmp_path, "e", lossless=True)

    assert near.path is not None
    bound = 1 << (near_lossless_bits(40) - 1)
    with Image.open(near.path) as result:
        got = result.convert("RGB").tobytes()
        differences = [abs(a - b) for a, b in zip(got, original.tobytes(), strict=True)]
    assert 0 < max(differences) <= bound
    assert near.size_bytes < exact.size_bytes


async def test_webp_quality_and_alpha_quality_change_size(tmp_path: Path) -> None:
    source = png_output(tmp_path, noisy_image("RGBA"))

    low = await convert(source, "webp", tmp_path, "lo", quality=10, alpha_quality=10)
    high = await convert(source, "webp", tmp_path, "hi", quality=95, alpha_quality=100)

    assert low.size_bytes < high.size_bytes
    assert low.path is not None
    with Image.open(low.path) as result:
        assert result.mode == "RGBA"


async def test_png_compress_level_changes_size_not_pixels(tmp_path: Path) -> None:
    original = noisy_image()
    source = png_output(tmp_path, original, name="in.png")

    stored = await convert(source, "png", tmp_path, "0", compress_level=0)
    packed = await convert(source, "png", tmp_path, "9", compressionLevel=9)

    assert stored.size_bytes > packed.size_bytes
    for converted in (stored, packed):
        assert converted.path is not None
        with Image.open(converted.path) as result:
            assert result.tobytes() == original.tobytes()


async def test_png_to_png_in_place_keeps_the_embedded_workflow(tmp_path: Path) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", '{"3": {"class_type": "KSampler"}}')
    source = png_output(tmp_path, noisy_image(), pnginfo=info)

    converted = await convert_output(source, ConvertSpec("png", {"compress_level": 9}))

    assert converted.path == source.path  # same name in the same folder: replaced in place
    assert converted.path is not None
    with Image.open(converted.path) as result:
        assert result.info["prompt"] == '{"3": {"class_type": "KSampler"}}'
    assert names_in(tmp_path) == ["ComfyUI_00001_.png"]  # no temporary left


@pytest.mark.parametrize("kind", ["video", "audio"])
async def test_video_and_audio_are_left_unchanged_with_a_note(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"not an image")
    output = OutputFile("9", kind, "clip.mp4", "", "output", "video/mp4", 12, path=path)

    result = await convert_output(output, ConvertSpec("webp"))

    assert (result.path, result.filename, result.content_type) == (path, "clip.mp4", "video/mp4")
    assert result.note and kind in result.note


async def test_animated_images_are_left_unchanged_with_a_note(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ("red", "green", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    output = OutputFile("9", "image", "anim.gif", "", "output", "image/gif", path.stat().st_size, path=path)

    result = await convert_output(output, ConvertSpec("jpeg"))

    assert result.path == path and result.filename == "anim.gif"
    assert result.note and "animated" in result.note
