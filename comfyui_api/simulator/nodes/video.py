"""Video nodes encoded with PyAV: CreateVideo, SaveVideo (mp4/h264) and SaveWEBM (vp9/av1)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from comfyui_api.simulator.nodes.outputs import HIDDEN, PREFIX_TOOLTIP, SAVE_DESCRIPTION
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, inp

_VIDEO = "comfy_extras.nodes_video"


@dataclass(frozen=True)
class VideoClip:
    images: Any
    frame_rate: Fraction
    audio: Any = None


def _create_video(ctx: NodeContext, images: Any, fps: float, audio: Any = None) -> tuple:
    return (VideoClip(images=images, frame_rate=Fraction(fps), audio=audio),)


def _write_video(path: str, clip: VideoClip, codec: str, metadata: dict[str, str], crf: float | None) -> None:
    options = {"movflags": "use_metadata_tags"} if codec == "h264" else {}
    with av.open(path, mode="w", options=options) as container:
        for key, value in metadata.items():
            container.metadata[key] = value
        encoder = {"h264": "h264", "vp9": "libvpx-vp9", "av1": "libsvtav1"}[codec]
        stream: Any = container.add_stream(encoder, rate=Fraction(round(clip.frame_rate * 1000), 1000))
        stream.width, stream.height = clip.images.shape[2], clip.images.shape[1]
        stream.pix_fmt = "yuv420p10le" if codec == "av1" else "yuv420p"
        if crf is not None:
            stream.bit_rate = 0
            stream.options = {"crf": str(crf)}
        for frame in clip.images:
            pixels = np.clip(np.asarray(frame[..., :3]) * 255, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))


def _save_video(
    ctx: NodeContext,
    video: Any,
    filename_prefix: str,
    format: str,
    codec: str,
    prompt: Any = None,
    extra_pnginfo: Any = None,
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, ctx.folders.output_dir, video.images.shape[2], video.images.shape[1])
    if format not in ("auto", "mp4"):
        raise ValueError("Only MP4 format is supported for now")
    if codec not in ("auto", "h264"):
        raise ValueError("Only H264 codec is supported for now")
    metadata: dict[str, str] = {}
    if not ctx.config.disable_metadata:
        merged = dict(extra_pnginfo) if isinstance(extra_pnginfo, dict) else {}
        if prompt is not None:
            merged["prompt"] = prompt
        metadata = {key: json.dumps(value) for key, value in merged.items()}
    file = f"{where.filename}_{where.counter:05}_.mp4"
    _write_video(os.fspath(where.folder / file), video, "h264", metadata, None)
    return {"ui": {"images": [{"filename": file, "subfolder": where.subfolder, "type": "output"}], "animated": (True,)}}


def _save_webm(
    ctx: NodeContext,
    images: Any,
    codec: str,
    fps: float,
    filename_prefix: str,
    crf: float,
    prompt: Any = None,
    extra_pnginfo: Any = None,
) -> dict[str, Any]:
    where = ctx.folders.save_path(filename_prefix, ctx.folders.output_dir, images[0].shape[1], images[0].shape[0])
    metadata = {"prompt": json.dumps(prompt)} if prompt is not None else {}
    if isinstance(extra_pnginfo, dict):
        metadata.update({key: json.dumps(value) for key, value in extra_pnginfo.items()})
    file = f"{where.filename}_{where.counter:05}_.webm"
    clip = VideoClip(images=images, frame_rate=Fraction(round(fps * 1000), 1000))
    _write_video(os.fspath(where.folder / file), clip, codec, metadata, crf)
    return {"ui": {"images": [{"filename": file, "subfolder": where.subfolder, "type": "output"}], "animated": (True,)}}


NODES = (
    NodeSpec(
        name="SaveWEBM",
        category="image/video",
        python_module=_VIDEO,
        v3=True,
        experimental=True,
        output_node=True,
        hidden=HIDDEN,
        required={
            "images": inp("IMAGE", {}),
            "filename_prefix": inp("STRING", {"default": "ComfyUI", "multiline": False}),
            "codec": inp("COMBO", {"multiselect": False, "options": ["vp9", "av1"]}),
            "fps": inp("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
            "crf": inp(
                "FLOAT",
                {
                    "tooltip": "Higher crf means lower quality with a smaller file size, lower "
                    "crf means higher quality higher filesize.",
                    "default": 32.0,
                    "min": 0,
                    "max": 63.0,
                    "step": 1,
                },
            ),
        },
        execute=_save_webm,
    ),
    NodeSpec(
        name="SaveVideo",
        category="image/video",
        python_module=_VIDEO,
        v3=True,
        display_name="Save Video",
        description=SAVE_DESCRIPTION,
        output_node=True,
        hidden=HIDDEN,
        required={
            "video": inp("VIDEO", {"tooltip": "The video to save."}),
            "filename_prefix": inp(
                "STRING", {"tooltip": PREFIX_TOOLTIP, "default": "video/ComfyUI", "multiline": False}
            ),
            "format": inp(
                "COMBO",
                {
                    "tooltip": "The format to save the video as.",
                    "default": "auto",
                    "multiselect": False,
                    "options": ["auto", "mp4"],
                },
            ),
            "codec": inp(
                "COMBO",
                {
                    "tooltip": "The codec to use for the video.",
                    "default": "auto",
                    "multiselect": False,
                    "options": ["auto", "h264"],
                },
            ),
        },
        execute=_save_video,
    ),
    NodeSpec(
        name="CreateVideo",
        category="image/video",
        python_module=_VIDEO,
        v3=True,
        display_name="Create Video",
        description="Create a video from images.",
        required={
            "images": inp("IMAGE", {"tooltip": "The images to create a video from."}),
            "fps": inp("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}),
        },
        optional={"audio": inp("AUDIO", {"tooltip": "The audio to add to the video."})},
        outputs=("VIDEO",),
        execute=_create_video,
    ),
)
