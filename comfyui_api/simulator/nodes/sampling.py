"""The model nodes, simulated: CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode,
VAEEncode.

No weights are loaded; every result is a pure function of the inputs. VAEEncode crops the image to a multiple of
8 pixels (centred, as ComfyUI's VAE does), averages each 8x8 block and solves for the 4-channel latent whose
latent preview is that colour. KSampler draws noise from the seed and returns
`(1 - denoise) * latent_image + denoise * noise`; denoise above 0.9999 counts as 1 (pure noise, as for txt2img)
and denoise 0 returns latent_image untouched without running a step, as ComfyUI's empty sigma schedule does.
Sampling spends --step-seconds per step with progress (and latent previews when --preview-method is not none), so
queueing, progress and interrupt can be exercised. VAEDecode renders the latent preview at full size and mixes in
40% texture seeded by the latent's bytes, so an encoded image survives a low-denoise round trip recognisably.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from comfyui_api.simulator.nodes.images import MAX_RESOLUTION
from comfyui_api.simulator.nodes.spec import NodeContext, NodeSpec, inp

SAMPLERS = (
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
)
SCHEDULERS = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)
# A linear map from the 4 SD1.x latent channels to RGB, good enough for recognisable previews.
_LATENT_RGB = np.array(
    [[0.35, 0.23, 0.32], [0.33, 0.50, 0.24], [-0.28, 0.18, 0.27], [-0.21, -0.26, -0.72]], dtype=np.float32
)
# Its pseudo-inverse (3 x 4): RGB in -1..1 -> the smallest latent previewing as that colour.
_RGB_LATENT = np.linalg.pinv(_LATENT_RGB).astype(np.float32)
# Pixels per latent cell along each axis (SD1.x/SDXL VAEs).
VAE_SCALE = 8
# ComfyUI treats a denoise this close to 1 as a full denoise.
_FULL_DENOISE = 0.9999


@dataclass(frozen=True)
class SimulatedModel:
    """Stands in for MODEL, CLIP and VAE objects: only the checkpoint name is known."""

    kind: str
    checkpoint: str


def _checkpoints(folders: Any) -> list[str]:
    return folders.model_files("checkpoints")


def _load_checkpoint(ctx: NodeContext, ckpt_name: str) -> tuple:
    if ctx.folders.model_path("checkpoints", ckpt_name) is None:
        raise FileNotFoundError(f"Model in folder 'checkpoints' with filename '{ckpt_name}' not found.")
    return tuple(SimulatedModel(kind, ckpt_name) for kind in ("MODEL", "CLIP", "VAE"))


def _encode(ctx: NodeContext, text: str, clip: Any) -> tuple:
    if clip is None:
        raise RuntimeError(
            "ERROR: clip input is invalid: None\n\nIf the clip is from a checkpoint loader node your checkpoint "
            "does not contain a valid clip or text encoder model."
        )
    digest = hashlib.sha256(str(text).encode("utf-8")).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    embedding = rng.standard_normal((1, 77, 8)).astype(np.float32)
    return ([[embedding, {"pooled_output": embedding[:, 0, :], "text": text}]],)


def _empty_latent(ctx: NodeContext, width: int, height: int, batch_size: int = 1) -> tuple:
    return ({"samples": np.zeros((batch_size, 4, height // 8, width // 8), dtype=np.float32)},)


def latent_preview(latent: np.ndarray) -> Image.Image:
    """Latent2RGB of the first latent in the batch: [4, h, w] -> an h x w RGB image."""
    rgb = np.tensordot(np.moveaxis(latent[0], 0, -1), _LATENT_RGB, axes=1)
    data = (np.clip((rgb + 1.0) / 2.0, 0.0, 1.0) * 255.0).astype(np.uint8)
    return Image.fromarray(data)


def _vae_encode(ctx: NodeContext, pixels: Any, vae: Any) -> tuple:
    rgb = np.asarray(pixels, dtype=np.float32)[..., :3]
    batch, height, width, _ = rgb.shape
    cells_h, cells_w = height // VAE_SCALE, width // VAE_SCALE
    if cells_h == 0 or cells_w == 0:
        raise RuntimeError(f"VAEEncode needs an image of at least {VAE_SCALE}x{VAE_SCALE} pixels, got {width}x{height}")
    top, left = (height % VAE_SCALE) // 2, (width % VAE_SCALE) // 2
    crop = rgb[:, top : top + cells_h * VAE_SCALE, left : left + cells_w * VAE_SCALE, :]
    blocks = crop.reshape(batch, cells_h, VAE_SCALE, cells_w, VAE_SCALE, 3).mean(axis=(2, 4))
    latent = np.tensordot(blocks * 2.0 - 1.0, _RGB_LATENT, axes=1)
    return ({"samples": np.ascontiguousarray(np.moveaxis(latent, -1, 1), dtype=np.float32)},)


def _sample(
    ctx: NodeContext,
    model: Any,
    seed: int,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Any,
    negative: Any,
    latent_image: Any,
    denoise: float = 1.0,
) -> tuple:
    if denoise <= 0.0:
        return (dict(latent_image),)
    start = np.asarray(latent_image["samples"], dtype=np.float32)
    final = np.random.default_rng(seed).standard_normal(start.shape).astype(np.float32)
    if denoise <= _FULL_DENOISE:
        final = ((1.0 - denoise) * start + denoise * final).astype(np.float32)
    for step in range(steps):
        time.sleep(ctx.config.step_seconds)
        # The progress callback notices an interrupt before it reports the step, as ComfyUI's does.
        preview = None
        if ctx.config.previews_enabled:
            partial = start + (final - start) * ((step + 1) / steps)
            preview = ("JPEG", latent_preview(partial), ctx.config.preview_size)
        ctx.progress.update(step + 1, steps, preview)
    out = dict(latent_image)
    out["samples"] = final
    return (out,)


def _decode(ctx: NodeContext, samples: Any, vae: Any) -> tuple:
    latent = np.asarray(samples["samples"], dtype=np.float32)
    batch, _, height, width = latent.shape
    base = np.stack([np.asarray(latent_preview(latent[i : i + 1]), dtype=np.float32) / 255.0 for i in range(batch)])
    base = base.repeat(8, axis=1).repeat(8, axis=2)
    digest = hashlib.sha256(latent.tobytes()).digest()
    texture = np.random.default_rng(int.from_bytes(digest[:8], "little")).random((batch, height * 8, width * 8, 3))
    return (np.clip(0.6 * base + 0.4 * texture, 0.0, 1.0).astype(np.float32),)


NODES = (
    NodeSpec(
        name="KSampler",
        category="sampling",
        python_module="nodes",
        description="Uses the provided model, positive and negative conditioning to denoise the latent image.",
        required={
            "model": inp("MODEL", {"tooltip": "The model used for denoising the input latent."}),
            "seed": inp(
                "INT",
                {
                    "default": 0,
                    "min": 0,
                    "max": 0xFFFFFFFFFFFFFFFF,
                    "control_after_generate": True,
                    "tooltip": "The random seed used for creating the noise.",
                },
            ),
            "steps": inp(
                "INT",
                {
                    "default": 20,
                    "min": 1,
                    "max": 10000,
                    "tooltip": "The number of steps used in the denoising process.",
                },
            ),
            "cfg": inp(
                "FLOAT",
                {
                    "default": 8.0,
                    "min": 0.0,
                    "max": 100.0,
                    "step": 0.1,
                    "round": 0.01,
                    "tooltip": "The Classifier-Free Guidance scale balances creativity and adherence "
                    "to the prompt. Higher values result in images more closely matching the prompt "
                    "however too high values will negatively impact quality.",
                },
            ),
            "sampler_name": inp(
                SAMPLERS,
                {
                    "tooltip": "The algorithm used when sampling, this can affect the "
                    "quality, speed, and style of the generated output."
                },
            ),
            "scheduler": inp(
                SCHEDULERS, {"tooltip": "The scheduler controls how noise is gradually removed to form the image."}
            ),
            "positive": inp(
                "CONDITIONING",
                {"tooltip": "The conditioning describing the attributes you want to include in the image."},
            ),
            "negative": inp(
                "CONDITIONING",
                {"tooltip": "The conditioning describing the attributes you want to exclude from the image."},
            ),
            "latent_image": inp("LATENT", {"tooltip": "The latent image to denoise."}),
            "denoise": inp(
                "FLOAT",
                {
                    "default": 1.0,
                    "min": 0.0,
                    "max": 1.0,
                    "step": 0.01,
                    "tooltip": "The amount of denoising applied, lower values will maintain the "
                    "structure of the initial image allowing for image to image sampling.",
                },
            ),
        },
        outputs=("LATENT",),
        output_tooltips=("The denoised latent.",),
        execute=_sample,
    ),
    NodeSpec(
        name="CheckpointLoaderSimple",
        category="loaders",
        python_module="nodes",
        display_name="Load Checkpoint",
        description="Loads a diffusion model checkpoint, diffusion models are used to denoise latents.",
        required={"ckpt_name": inp(_checkpoints, {"tooltip": "The name of the checkpoint (model) to load."})},
        outputs=("MODEL", "CLIP", "VAE"),
        output_tooltips=(
            "The model used for denoising latents.",
            "The CLIP model used for encoding text prompts.",
            "The VAE model used for encoding and decoding images to and from latent space.",
        ),
        execute=_load_checkpoint,
    ),
    NodeSpec(
        name="CLIPTextEncode",
        category="conditioning",
        python_module="nodes",
        display_name="CLIP Text Encode (Prompt)",
        description="Encodes a text prompt using a CLIP model into an embedding that can be used to guide the "
        "diffusion model towards generating specific images.",
        required={
            "text": inp("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": inp("CLIP", {"tooltip": "The CLIP model used for encoding the text."}),
        },
        outputs=("CONDITIONING",),
        output_tooltips=("A conditioning containing the embedded text used to guide the diffusion model.",),
        execute=_encode,
    ),
    NodeSpec(
        name="VAEDecode",
        category="latent",
        python_module="nodes",
        display_name="VAE Decode",
        description="Decodes latent images back into pixel space images.",
        required={
            "samples": inp("LATENT", {"tooltip": "The latent to be decoded."}),
            "vae": inp("VAE", {"tooltip": "The VAE model used for decoding the latent."}),
        },
        outputs=("IMAGE",),
        output_tooltips=("The decoded image.",),
        execute=_decode,
    ),
    NodeSpec(
        name="VAEEncode",
        category="latent",
        python_module="nodes",
        display_name="VAE Encode",
        required={"pixels": inp("IMAGE"), "vae": inp("VAE")},
        outputs=("LATENT",),
        execute=_vae_encode,
    ),
    NodeSpec(
        name="EmptyLatentImage",
        category="latent",
        python_module="nodes",
        display_name="Empty Latent Image",
        description="Create a new batch of empty latent images to be denoised via sampling.",
        required={
            "width": inp(
                "INT",
                {
                    "default": 512,
                    "min": 16,
                    "max": MAX_RESOLUTION,
                    "step": 8,
                    "tooltip": "The width of the latent images in pixels.",
                },
            ),
            "height": inp(
                "INT",
                {
                    "default": 512,
                    "min": 16,
                    "max": MAX_RESOLUTION,
                    "step": 8,
                    "tooltip": "The height of the latent images in pixels.",
                },
            ),
            "batch_size": inp(
                "INT", {"default": 1, "min": 1, "max": 4096, "tooltip": "The number of latent images in the batch."}
            ),
        },
        outputs=("LATENT",),
        output_tooltips=("The empty latent image batch.",),
        execute=_empty_latent,
    ),
)
