"""Audio nodes encoded with PyAV: LoadAudio, EmptyAudio, SaveAudio (FLAC), SaveAudioMP3, SaveAudioOpus and
PreviewAudio.

Audio is {"waveform": float32 [batch, channels, samples], "sample_rate": int}, as in ComfyUI.
"""

from __future__ import annotations

import io
import json
from typing import Any

import av
import numpy as np

from comfyui_api.simulator.nodes.images import file_digest
from comfyui_api.simulator.nodes.outputs import HIDDEN, temp_suffix
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, comfy_qualname, inp

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
_BITRATES = {"64k": 64000, "96k": 96000, "128k": 128000, "192k": 192000, "320k": 320000}


def _audio_files(folders: Any) -> list[str]:
    return folders.input_files(content_types=("audio", "video"))


@comfy_qualname("LoadAudio.VALIDATE_INPUTS")
def _validate_audio(ctx: NodeContext, audio: str) -> bool | str:
    if not ctx.folders.annotated_exists(audio):
        return f"Invalid audio file: {audio}"
    return True


def _to_float32(buf: np.ndarray) -> np.ndarray:
    if np.issubdtype(buf.dtype, np.floating):
        return buf.astype(np.float32)
    if buf.dtype == np.int16:
        return buf.astype(np.float32) / (2**15)
    if buf.dtype == np.int32:
        return buf.astype(np.float32) / (2**31)
    raise ValueError(f"Unsupported wav dtype: {buf.dtype}")


def _load_audio(ctx: NodeContext, audio: str) -> tuple:
    with av.open(ctx.folders.annotated_path(audio)) as container:
        if not container.streams.audio:
            raise ValueError("No audio stream found in the file.")
        stream = container.streams.audio[0]
        rate, channels = stream.codec_context.sample_rate, stream.channels
        chunks = []
        for frame in container.decode(streams=stream.index):
            assert isinstance(frame, av.AudioFrame)
            buf = frame.to_ndarray()
            if buf.shape[0] != channels:
                buf = buf.reshape(-1, channels).T
            chunks.append(_to_float32(buf))
    if not chunks:
        raise ValueError("No audio frames decoded.")
    return ({"waveform": np.concatenate(chunks, axis=1)[None, ...], "sample_rate": rate},)


def _empty_audio(ctx: NodeContext, duration: float, sample_rate: int, channels: int) -> tuple:
    samples = round(duration * sample_rate)
    return ({"waveform": np.zeros((1, channels, samples), dtype=np.float32), "sample_rate": sample_rate},)


def _resample(waveform: np.ndarray, old_rate: int, new_rate: int) -> np.ndarray:
    count = max(1, round(waveform.shape[-1] * new_rate / old_rate))
    old_x = np.arange(waveform.shape[-1]) / old_rate
    new_x = np.arange(count) / new_rate
    return np.stack([np.interp(new_x, old_x, channel) for channel in waveform]).astype(np.float32)


def _opus_rate(rate: int) -> int:
    if rate > 48000:
        return 48000
    return rate if rate in OPUS_RATES else next((r for r in OPUS_RATES if r > rate), 48000)


def _encode_audio(waveform: np.ndarray, rate: int, fmt: str, quality: str, metadata: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    container = av.open(buffer, mode="w", format=fmt)
    for key, value in metadata.items():
        container.metadata[key] = value
    layout = "mono" if waveform.shape[0] == 1 else "stereo"
    codec = {"opus": "libopus", "mp3": "libmp3lame"}.get(fmt, "flac")
    stream: Any = container.add_stream(codec, rate=rate, layout=layout)
    if fmt == "opus" and quality in _BITRATES:
        stream.bit_rate = _BITRATES[quality]
    elif fmt == "mp3" and quality == "V0":
        stream.codec_context.qscale = 1
    elif fmt == "mp3" and quality in ("128k", "320k"):
        stream.bit_rate = _BITRATES[quality]
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(waveform.T.reshape(1, -1), dtype=np.float32), format="flt", layout=layout
    )
    frame.sample_rate = rate
    frame.pts = 0
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
    container.close()
    return buffer.getvalue()


def save_audio(
    ctx: NodeContext,
    audio: Any,
    filename_prefix: str,
    fmt: str,
    prompt: Any,
    extra_pnginfo: Any,
    quality: str = "128k",
    *,
    temp: bool = False,
) -> dict[str, Any]:
    output_dir = ctx.folders.temp_dir if temp else ctx.folders.output_dir
    if temp:
        filename_prefix += temp_suffix(ctx)
    where = ctx.folders.save_path(filename_prefix, output_dir)
    metadata: dict[str, str] = {}
    if not ctx.config.disable_metadata:
        if prompt is not None:
            metadata["prompt"] = json.dumps(prompt)
        if isinstance(extra_pnginfo, dict):
            metadata.update({key: json.dumps(value) for key, value in extra_pnginfo.items()})
    counter, results = where.counter, []
    for batch_number, waveform in enumerate(np.asarray(audio["waveform"], dtype=np.float32)):
        rate = int(audio["sample_rate"])
        if fmt == "opus" and _opus_rate(rate) != rate:
            waveform, rate = _resample(waveform, rate, _opus_rate(rate)), _opus_rate(rate)
        stem = f"{where.filename.replace('%batch_num%', str(batch_number))}_{counter:05}"
        # ComfyUI >= ~0.25 dropped the trailing underscore from audio names only.
        file = f"{stem}.{fmt}" if ctx.config.profile.plain_audio_names else f"{stem}_.{fmt}"
        (where.folder / file).write_bytes(_encode_audio(waveform, rate, fmt, quality, metadata))
        results.append({"filename": file, "subfolder": where.subfolder, "type": "temp" if temp else "output"})
        counter += 1
    return {"ui": {"audio": results}}


def _save_flac(
    ctx: NodeContext, audio: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
) -> dict[str, Any]:
    return save_audio(ctx, audio, filename_prefix, "flac", prompt, extra_pnginfo)


def _save_mp3(
    ctx: NodeContext,
    audio: Any,
    filename_prefix: str = "ComfyUI",
    prompt: Any = None,
    extra_pnginfo: Any = None,
    quality: str = "128k",
) -> dict[str, Any]:
    return save_audio(ctx, audio, filename_prefix, "mp3", prompt, extra_pnginfo, quality)


def _save_opus(
    ctx: NodeContext,
    audio: Any,
    filename_prefix: str = "ComfyUI",
    prompt: Any = None,
    extra_pnginfo: Any = None,
    quality: str = "V3",
) -> dict[str, Any]:
    return save_audio(ctx, audio, filename_prefix, "opus", prompt, extra_pnginfo, quality)


def _preview_audio(ctx: NodeContext, audio: Any, prompt: Any = None, extra_pnginfo: Any = None) -> dict[str, Any]:
    return save_audio(ctx, audio, "ComfyUI", "flac", prompt, extra_pnginfo, temp=True)


_AUDIO = "comfy_extras.nodes_audio"
_PREFIX = {"default": "audio/ComfyUI"}

NODES = (
    NodeSpec(
        name="SaveAudio",
        category="audio",
        python_module=_AUDIO,
        display_name="Save Audio (FLAC)",
        output_node=True,
        hidden=HIDDEN,
        required={"audio": inp("AUDIO"), "filename_prefix": inp("STRING", _PREFIX)},
        execute=_save_flac,
    ),
    NodeSpec(
        name="SaveAudioMP3",
        category="audio",
        python_module=_AUDIO,
        display_name="Save Audio (MP3)",
        output_node=True,
        hidden=HIDDEN,
        required={
            "audio": inp("AUDIO"),
            "filename_prefix": inp("STRING", _PREFIX),
            "quality": inp(("V0", "128k", "320k"), {"default": "V0"}),
        },
        execute=_save_mp3,
    ),
    NodeSpec(
        name="SaveAudioOpus",
        category="audio",
        python_module=_AUDIO,
        display_name="Save Audio (Opus)",
        output_node=True,
        hidden=HIDDEN,
        required={
            "audio": inp("AUDIO"),
            "filename_prefix": inp("STRING", _PREFIX),
            "quality": inp(tuple(_BITRATES), {"default": "128k"}),
        },
        execute=_save_opus,
    ),
    NodeSpec(
        name="LoadAudio",
        category="audio",
        python_module=_AUDIO,
        display_name="Load Audio",
        required={"audio": inp(_audio_files, {"audio_upload": True})},
        outputs=("AUDIO",),
        execute=_load_audio,
        validate=_validate_audio,
        is_changed=lambda ctx, audio: file_digest(ctx, audio),
    ),
    NodeSpec(
        name="PreviewAudio",
        category="audio",
        python_module=_AUDIO,
        display_name="Preview Audio",
        output_node=True,
        hidden=HIDDEN,
        required={"audio": inp("AUDIO")},
        execute=_preview_audio,
    ),
    NodeSpec(
        name="EmptyAudio",
        category="audio",
        python_module=_AUDIO,
        display_name="Empty Audio",
        required={
            "duration": inp(
                "FLOAT",
                {
                    "default": 60.0,
                    "min": 0.0,
                    "max": 0xFFFFFFFFFFFFFFFF,
                    "step": 0.01,
                    "tooltip": "Duration of the empty audio clip in seconds",
                },
            ),
            "sample_rate": inp("INT", {"default": 44100, "tooltip": "Sample rate of the empty audio clip."}),
            "channels": inp(
                "INT",
                {"default": 2, "min": 1, "max": 2, "tooltip": "Number of audio channels (1 for mono, 2 for stereo)."},
            ),
        },
        outputs=("AUDIO",),
        execute=_empty_audio,
    ),
)
