"""API-format graph factories shared by the test suites: the text-to-image chain with ComfyUI's default node ids
("4" checkpoint, "5" latent, "6"/"7" prompts, "3" KSampler, "8" VAEDecode, "9" output). Builds dicts; talks to no
server.
"""

from __future__ import annotations

from typing import Any


def ksampler_node(
    *, seed: int, steps: int, cfg: float = 7.0, negative: list[Any] | None = None, denoise: float = 1.0
) -> dict[str, Any]:
    """KSampler (euler, normal) wired to model "4", positive "6", negative "7" (or `negative`) and latent "5"."""
    return {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": denoise,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0] if negative is None else negative,
            "latent_image": ["5", 0],
        },
    }


def txt2img_graph(
    checkpoint: str,
    *,
    prefix: str,
    seed: int,
    steps: int,
    size: int,
    positive: str,
    negative: str,
    output_class: str = "SaveImage",
) -> dict[str, Any]:
    """CheckpointLoaderSimple -> CLIPTextEncode x2 -> KSampler -> VAEDecode -> `output_class` (a SaveImage gets
    `prefix` as its filename_prefix; any other output node gets only the images)."""
    output_inputs: dict[str, Any] = {"images": ["8", 0]}
    if output_class == "SaveImage":
        output_inputs["filename_prefix"] = prefix
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["4", 1]}},
        "3": ksampler_node(seed=seed, steps=steps),
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": output_class, "inputs": output_inputs},
    }
