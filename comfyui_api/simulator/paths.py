"""The simulator's folders: input, output, temp, user and model folders, and ComfyUI's naming rules on them.

Owns path resolution (annotated names such as `x.png [output]`), model file listing and the per-prefix
output counter. Must not hold request or queue state; one Folders object per simulator.
"""

from __future__ import annotations

import mimetypes
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

PT_EXTENSIONS = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})

# ComfyUI's model folder keys in its order: (sub-folders under the models dir, accepted extensions).
_MODEL_FOLDERS: tuple[tuple[str, tuple[str, ...], frozenset[str]], ...] = (
    ("checkpoints", ("checkpoints",), PT_EXTENSIONS),
    ("configs", ("configs",), frozenset({".yaml"})),
    ("loras", ("loras",), PT_EXTENSIONS),
    ("vae", ("vae",), PT_EXTENSIONS),
    ("text_encoders", ("text_encoders", "clip"), PT_EXTENSIONS),
    ("diffusion_models", ("unet", "diffusion_models"), PT_EXTENSIONS),
    ("clip_vision", ("clip_vision",), PT_EXTENSIONS),
    ("style_models", ("style_models",), PT_EXTENSIONS),
    ("embeddings", ("embeddings",), PT_EXTENSIONS),
    ("diffusers", ("diffusers",), frozenset({"folder"})),
    ("vae_approx", ("vae_approx",), PT_EXTENSIONS),
    ("controlnet", ("controlnet", "t2i_adapter"), PT_EXTENSIONS),
    ("gligen", ("gligen",), PT_EXTENSIONS),
    ("upscale_models", ("upscale_models",), PT_EXTENSIONS),
    ("custom_nodes", (), frozenset()),
    ("hypernetworks", ("hypernetworks",), PT_EXTENSIONS),
    ("photomaker", ("photomaker",), PT_EXTENSIONS),
    ("classifiers", ("classifiers",), frozenset({""})),
    ("model_patches", ("model_patches",), PT_EXTENSIONS),
    ("audio_encoders", ("audio_encoders",), PT_EXTENSIONS),
)
# Folders that also look inside the output directory (where ComfyUI's save nodes put models).
_OUTPUT_MODEL_FOLDERS = (
    ("checkpoints", "checkpoints"),
    ("text_encoders", "clip"),
    ("vae", "vae"),
    ("diffusion_models", "diffusion_models"),
    ("loras", "loras"),
)
# Extensions whose content type mimetypes does not know or gets wrong, as ComfyUI pins them.
_EXTENSION_CONTENT_TYPES = {"webp": "image", "fbx": "model"}


def _content_type(filename: str) -> str | None:
    extension = filename.split(".")[-1]
    if extension in _EXTENSION_CONTENT_TYPES:
        return _EXTENSION_CONTENT_TYPES[extension]
    mime, _ = mimetypes.guess_type(filename, strict=False)
    return mime.split("/")[0] if mime else None


@dataclass(frozen=True)
class SavePath:
    """Where a save node writes: folder, file stem, first free counter and the subfolder it reports."""

    folder: Path
    filename: str
    counter: int
    subfolder: str


@dataclass(frozen=True)
class Folders:
    base_dir: Path
    input_dir: Path
    output_dir: Path
    temp_dir: Path
    user_dir: Path
    models_dir: Path
    model_folders: dict[str, tuple[list[Path], frozenset[str]]] = field(default_factory=dict)

    @classmethod
    def create(
        cls, base_dir: Path, input_dir: Path, output_dir: Path, temp_dir: Path, user_dir: Path, models_dir: Path
    ) -> Folders:
        folders: dict[str, tuple[list[Path], frozenset[str]]] = {}
        for key, subdirs, extensions in _MODEL_FOLDERS:
            paths = [models_dir / s for s in subdirs] if subdirs else [base_dir / "custom_nodes"]
            folders[key] = (paths, extensions)
        for key, subdir in _OUTPUT_MODEL_FOLDERS:
            folders[key][0].append(output_dir / subdir)
        return cls(base_dir, input_dir, output_dir, temp_dir, user_dir, models_dir, folders)

    def make_dirs(self) -> None:
        for path in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir, self.models_dir):
            path.mkdir(parents=True, exist_ok=True)
        for _key, subdirs, _ in _MODEL_FOLDERS:
            for sub in subdirs:
                (self.models_dir / sub).mkdir(parents=True, exist_ok=True)

    def directory_by_type(self, type_name: object) -> Path | None:
        directories = {"output": self.output_dir, "temp": self.temp_dir, "input": self.input_dir}
        return directories.get(type_name) if isinstance(type_name, str) else None

    def annotated(self, name: str) -> tuple[str, Path | None]:
        """Split `x.png [output]` into ("x.png", output dir); names without annotation give (name, None)."""
        for suffix, directory in (
            (" [output]", self.output_dir),
            (" [input]", self.input_dir),
            (" [temp]", self.temp_dir),
        ):
            # ComfyUI tests the bracket form only and cuts one extra character (the space) before it.
            if name.endswith(suffix[1:]):
                return name[: -len(suffix)], directory
        return name, None

    def annotated_path(self, name: str, default_dir: Path | None = None) -> str:
        stripped, base = self.annotated(name)
        if base is None:
            base = default_dir if default_dir is not None else self.input_dir
        return os.path.join(base, stripped)

    def annotated_exists(self, name: str) -> bool:
        return os.path.exists(self.annotated_path(name))

    def input_files(self, content_types: tuple[str, ...] | None = None, suffix: str | None = None) -> list[str]:
        """Top-level files of the input dir, filtered by content type or suffix, sorted (combo lists)."""
        try:
            entries = [e.name for e in os.scandir(self.input_dir) if e.is_file()]
        except FileNotFoundError:
            return []
        if content_types is not None:
            entries = [f for f in entries if _content_type(f) in content_types]
        if suffix is not None:
            entries = [f for f in entries if f.endswith(suffix)]
        return sorted(entries)

    def model_files(self, folder: str) -> list[str]:
        paths, extensions = self.model_folders[folder]
        found: set[str] = set()
        for root in paths:
            if not root.is_dir():
                continue
            for dirpath, subdirs, filenames in os.walk(root, followlinks=True):
                subdirs[:] = [d for d in subdirs if d != ".git"]
                for name in filenames:
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    if not extensions or os.path.splitext(rel)[-1].lower() in extensions:
                        found.add(rel)
        return sorted(found)

    def model_path(self, folder: str, filename: str) -> Path | None:
        if folder not in self.model_folders:
            return None
        relative = os.path.relpath(os.path.join("/", filename), "/")
        for root in self.model_folders[folder][0]:
            candidate = root / relative
            if candidate.is_file():
                return candidate
        return None

    def save_path(self, prefix: str, output_dir: Path, width: int = 0, height: int = 0) -> SavePath:
        """ComfyUI's get_save_image_path: subfolder from the prefix, counter = highest existing + 1."""
        if "%" in prefix:
            prefix = _expand_prefix(prefix, width, height)
        subfolder = os.path.dirname(os.path.normpath(prefix))
        filename = os.path.basename(os.path.normpath(prefix))
        folder = os.path.join(output_dir, subfolder)
        if os.path.commonpath((str(output_dir), os.path.abspath(folder))) != str(output_dir):
            raise Exception(  # ComfyUI raises a bare Exception with this text
                "**** ERROR: Saving image outside the output folder is not allowed."
                f"\n full_output_folder: {os.path.abspath(folder)}\n         output_dir: {output_dir}"
            )
        try:
            counter = _highest_counter(os.listdir(folder), filename) + 1
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            counter = 1
        return SavePath(Path(folder), filename, counter, subfolder)


def _highest_counter(names: list[str], stem: str) -> int:
    """Largest N among files named `<stem>_<N>_...`; 0 when there are none."""
    stem_len = len(stem)
    best = 0
    for name in names:
        head = name[: stem_len + 1]
        if os.path.normcase(head[:-1]) != os.path.normcase(stem) or head[-1:] != "_":
            continue
        try:
            digits = int(name[stem_len + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        best = max(best, digits)
    return best


def _expand_prefix(prefix: str, width: int, height: int) -> str:
    now = time.localtime()
    replacements = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": str(now.tm_mon).zfill(2),
        "%day%": str(now.tm_mday).zfill(2),
        "%hour%": str(now.tm_hour).zfill(2),
        "%minute%": str(now.tm_min).zfill(2),
        "%second%": str(now.tm_sec).zfill(2),
    }
    for key, value in replacements.items():
        prefix = prefix.replace(key, value)
    return prefix
