"""Small real media files for tests, made on the fly with Pillow and PyAV (no fixtures on disk)."""

from __future__ import annotations

import io

import av
import numpy as np
from PIL import Image


def image_bytes(fmt: str, *, size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (200, 30, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def video_bytes(container: str, codec: str) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()


def audio_bytes(container: str, codec: str) -> bytes:
    buffer = io.BytesIO()
    integer = codec in ("flac", "pcm_s16le")
    with av.open(buffer, "w", format=container) as output:
        stream = output.add_stream(codec, rate=48000)
        samples = np.zeros((1, 1024), dtype=np.int16 if integer else np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="s16" if integer else "fltp", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return buffer.getvalue()
