"""The simulator's command line: ComfyUI's main.py flags that matter, plus the simulator's own.

Owns parsing argv into one frozen SimulatorConfig. Unknown ComfyUI flags (--cpu, --highvram, ...) are
accepted and ignored so that any command line that launches ComfyUI launches the simulator.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfyui_api.simulator.profile import NEWEST, PROFILES, ComfyProfile, profile_for

PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")
# ComfyUI keeps its folders beside its main.py; the simulator has no such folder of its own and never writes into the
# working directory, so without --base-directory they live here (where `comfyui-api serve` keeps them too).
DEFAULT_BASE_DIR = Path("~/.local/share/comfyui-api/simulator")


@dataclass(frozen=True)
class SimulatorConfig:
    listen: str = "127.0.0.1"
    port: int = 8188
    base_dir: Path = Path(".")
    input_dir: Path = Path("input")
    output_dir: Path = Path("output")
    temp_dir: Path = Path("temp")
    user_dir: Path = Path("user")
    models_dir: Path = Path("models")
    preview_method: str = "none"
    preview_size: int = 512
    # ComfyUI keeps the default as the int 100 and a given value as a float; /features shows the difference.
    max_upload_size_mb: float | int = 100
    disable_metadata: bool = False
    cors_origin: str | None = None
    step_seconds: float = 0.05
    profile: ComfyProfile = PROFILES[NEWEST]  # the ComfyUI release whose wire behaviour is simulated
    # ComfyUI 0.38+ answers 409 to a prompt_id it has seen before; 0.33.0 still takes it
    reject_duplicate_prompt_ids: bool = False
    argv: tuple[str, ...] = ()

    @property
    def max_upload_size_bytes(self) -> int:
        return round(self.max_upload_size_mb * 1024 * 1024)

    def server_features(self) -> dict[str, object]:
        max_upload_size = self.max_upload_size_mb * 1024 * 1024
        if not self.profile.new_system_keys:
            return {"supports_preview_metadata": True, "max_upload_size": max_upload_size}
        return {
            "supports_preview_metadata": True,
            "supports_model_type_tags": True,
            "max_upload_size": max_upload_size,
            "extension": {"manager": {"supports_v4": True}},
            "node_replacements": True,
            "assets": False,
        }

    @property
    def previews_enabled(self) -> bool:
        return self.preview_method != "none"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m comfyui_api.simulator", add_help=True)
    # ComfyUI: a bare --listen means every interface.
    parser.add_argument("--listen", type=str, default="127.0.0.1", nargs="?", const="0.0.0.0,::")
    parser.add_argument("--port", type=int, default=8188)
    parser.add_argument(
        "--base-directory", type=str, default=None, help=f"where the folders are by default ({DEFAULT_BASE_DIR})"
    )
    parser.add_argument("--input-directory", type=str, default=None)
    parser.add_argument("--output-directory", type=str, default=None)
    parser.add_argument("--temp-directory", type=str, default=None)
    parser.add_argument("--user-directory", type=str, default=None)
    parser.add_argument("--models-directory", type=str, default=None)
    parser.add_argument("--preview-method", type=str, default="none", choices=PREVIEW_METHODS)
    parser.add_argument("--preview-size", type=int, default=512)
    parser.add_argument("--max-upload-size", type=float, default=100)
    parser.add_argument("--disable-metadata", action="store_true")
    parser.add_argument("--enable-cors-header", type=str, default=None, nargs="?", const="*")
    parser.add_argument(
        "--step-seconds", type=float, default=0.05, help="simulated time per KSampler step (simulator only)"
    )
    parser.add_argument(
        "--comfyui-version",
        default=NEWEST,
        choices=sorted(PROFILES),
        help=f"the ComfyUI release whose wire behaviour to reproduce (simulator only; default {NEWEST})",
    )
    parser.add_argument(
        "--reject-duplicate-prompt-ids",
        action="store_true",
        help="answer 409 to a prompt_id seen before, as ComfyUI 0.38+ does (simulator only)",
    )
    return parser


def parse_config(argv: Sequence[str], default_base: Path | None = None) -> SimulatorConfig:
    """Parse argv (without the program name); directories default to ComfyUI's, under the base dir
    (`--base-directory`, else `default_base`, else `DEFAULT_BASE_DIR`)."""
    args, _ignored = _parser().parse_known_args(list(argv))
    if args.port < 0 or args.port > 65535:
        raise SystemExit(f"--port must be between 0 and 65535, got {args.port}")
    if args.step_seconds < 0:
        raise SystemExit(f"--step-seconds must not be negative, got {args.step_seconds}")
    if args.preview_size < 1:
        raise SystemExit(f"--preview-size must be positive, got {args.preview_size}")
    base = Path(os.path.abspath(args.base_directory or default_base or DEFAULT_BASE_DIR.expanduser()))

    def pick(value: str | None, default: Path) -> Path:
        return Path(os.path.abspath(value)) if value else default

    # ComfyUI puts its temp files in a "temp" folder inside --temp-directory.
    temp_dir = Path(os.path.abspath(args.temp_directory)) / "temp" if args.temp_directory else base / "temp"
    return SimulatorConfig(
        listen=args.listen,
        port=args.port,
        base_dir=base,
        input_dir=pick(args.input_directory, base / "input"),
        output_dir=pick(args.output_directory, base / "output"),
        temp_dir=temp_dir,
        user_dir=pick(args.user_directory, base / "user"),
        models_dir=pick(args.models_directory, base / "models"),
        preview_method=args.preview_method,
        preview_size=args.preview_size,
        max_upload_size_mb=args.max_upload_size,
        disable_metadata=args.disable_metadata,
        cors_origin=args.enable_cors_header,
        step_seconds=args.step_seconds,
        profile=profile_for(args.comfyui_version),
        reject_duplicate_prompt_ids=args.reject_duplicate_prompt_ids,
        argv=("main.py", *argv),
    )
