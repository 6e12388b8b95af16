"""Dynamic model loading: a URL given in a model loader's input (e.g. `ckpt_name`) is downloaded through the model
cache, placed in the folder ComfyUI reads for that loader, and replaced in the graph by the file name.

Public surface:
    folders = await discover_loader_folders(comfy_client)        # (class, input) -> folder, from /object_info
    resolver = ModelResolver(cache, model_dir, folders)
    graph, lease = await resolver.resolve_model_urls(graph, credentials)
    ...run the job...; lease.release()                           # the files stay pinned (not evictable) till then

The (class, input) -> folder table is learnt from ComfyUI itself (a combo input whose options equal the file list of
`/models/{folder}`), falls back to a static table of core loaders, then to well-known input names. Any failure
raises InputStagingError naming `prompt.<node>.inputs.<name>`. Graphs are never mutated in place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from comfyui_api.errors import ComfyApiError, InputStagingError, URLRefused
from comfyui_api.models.cache import CachePin, ModelCache
from comfyui_api.models.urls import cache_url, is_url
from comfyui_api.storage.base import Credential

log = logging.getLogger(__name__)

# ComfyUI's model folder keys (GET /models on ComfyUI 0.3.64), used when ComfyUI cannot be asked.
COMFY_MODEL_FOLDERS = frozenset(
    {
        "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models", "clip_vision",
        "style_models", "embeddings", "diffusers", "vae_approx", "controlnet", "gligen", "upscale_models",
        "hypernetworks", "photomaker", "classifiers", "model_patches", "audio_encoders",
    }
)  # fmt: skip

# Folder keys ComfyUI lists that hold code, not models.
_NOT_MODEL_FOLDERS = frozenset({"custom_nodes"})

# Core loaders: (class_type, input name) -> the folder_paths key the node reads.
STATIC_LOADER_INPUTS: Mapping[tuple[str, str], str] = {
    ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "ckpt_name"): "checkpoints",
    ("CheckpointLoader", "config_name"): "configs",
    ("unCLIPCheckpointLoader", "ckpt_name"): "checkpoints",
    ("ImageOnlyCheckpointLoader", "ckpt_name"): "checkpoints",
    ("VAELoader", "vae_name"): "vae",
    ("LoraLoader", "lora_name"): "loras",
    ("LoraLoaderModelOnly", "lora_name"): "loras",
    ("CLIPLoader", "clip_name"): "text_encoders",
    ("DualCLIPLoader", "clip_name1"): "text_encoders",
    ("DualCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name1"): "text_encoders",
    ("TripleCLIPLoader", "clip_name2"): "text_encoders",
    ("TripleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name1"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name2"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name3"): "text_encoders",
    ("QuadrupleCLIPLoader", "clip_name4"): "text_encoders",
    ("UNETLoader", "unet_name"): "diffusion_models",
    ("ControlNetLoader", "control_net_name"): "controlnet",
    ("DiffControlNetLoader", "control_net_name"): "controlnet",
    ("StyleModelLoader", "style_model_name"): "style_models",
    ("CLIPVisionLoader", "clip_name"): "clip_vision",
    ("GLIGENLoader", "gligen_name"): "gligen",
    ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
    ("UpscaleModelLoader", "model_name"): "upscale_models",
    ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    ("ModelPatchLoader", "name"): "model_patches",
    ("AudioEncoderLoader", "audio_encoder_name"): "audio_encoders",
}

# Input names that mean one folder whatever the node (custom loaders reuse them). Ambiguous names such as
# `clip_name` (text encoder or CLIP vision) and `model_name` are deliberately absent.
INPUT_NAME_FOLDERS: Mapping[str, str] = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "unet_name": "diffusion_models",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
}


class ModelCatalog(Protocol):
    """What discovery needs from ComfyUI (ComfyClient satisfies it)."""

    async def object_info(self) -> dict[str, Any]: ...

    async def list_models(self, folder: str | None = None) -> list[str]: ...


@dataclass(frozen=True)
class LoaderFolders:
    """Which model folder each loader input reads. `discovered` comes from ComfyUI and wins over the tables."""

    discovered: Mapping[tuple[str, str], str] = field(default_factory=dict)
    folders: frozenset[str] = COMFY_MODEL_FOLDERS

    def folder_for(self, class_type: str, input_name: str) -> str | None:
        key = (class_type, input_name)
        return self.discovered.get(key) or STATIC_LOADER_INPUTS.get(key) or INPUT_NAME_FOLDERS.get(input_name)


def combo_options(spec: Any) -> list[str] | None:
    """The option list of a combo input spec: V1 `[[...], {...}]` or V3 `["COMBO", {"options": [...]}]`."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    if isinstance(spec[0], list):
        options: Any = spec[0]
    elif spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], Mapping):
        options = spec[1].get("options")
    else:
        return None
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        return None
    return options


def loader_inputs_from_object_info(
    object_info: Mapping[str, Any], folder_files: Mapping[str, Sequence[str]]
) -> dict[tuple[str, str], str]:
    """(class, input) -> folder for every combo input whose options are exactly one folder's (non-empty) file
    list. Folders with identical lists are ambiguous and left to the static tables."""
    by_files: dict[frozenset[str], list[str]] = {}
    for folder, files in folder_files.items():
        if files:
            by_files.setdefault(frozenset(files), []).append(folder)
    found: dict[tuple[str, str], str] = {}
    for class_type, info in object_info.items():
        inputs = info.get("input") if isinstance(info, Mapping) else None
        if not isinstance(inputs, Mapping):
            continue
        for section in ("required", "optional"):
            specs = inputs.get(section)
            if not isinstance(specs, Mapping):
                continue
            for input_name, spec in specs.items():
                options = combo_options(spec)
                folders = by_files.get(frozenset(options)) if options else None
                if folders and len(folders) == 1:
                    found[(class_type, input_name)] = folders[0]
    return found


async def discover_loader_folders(catalog: ModelCatalog, *, timeout_s: float = 60.0) -> LoaderFolders:
    """Ask ComfyUI which folders exist and what they hold, and match them to loader inputs. Falls back to the
    static tables (logged) when ComfyUI cannot answer."""
    try:
        async with asyncio.timeout(timeout_s):
            object_info = await catalog.object_info()
            folders = [f for f in await catalog.list_models() if isinstance(f, str) and f not in _NOT_MODEL_FOLDERS]
            listings = await asyncio.gather(*(catalog.list_models(f) for f in folders), return_exceptions=True)
    except Exception as exc:  # discovery is an optimisation; the static tables still work
        log.warning("cannot learn model loader folders from ComfyUI (%s); using the built-in table", exc)
        return LoaderFolders()
    folder_files = {f: list(files) for f, files in zip(folders, listings, strict=True) if isinstance(files, list)}
    discovered = loader_inputs_from_object_info(object_info, folder_files)
    log.info("learnt %d model loader inputs from ComfyUI's object_info", len(discovered))
    return LoaderFolders(discovered=discovered, folders=frozenset(folders) or COMFY_MODEL_FOLDERS)


@dataclass(frozen=True)
class _ModelInput:
    node_id: str
    input_name: str
    url: str
    folder: str

    @property
    def field(self) -> str:
        return f"prompt.{self.node_id}.inputs.{self.input_name}"


class ModelResolver:
    """Replaces model URLs in loader inputs by cached, placed files. `max_parallel` bounds downloads per graph."""

    def __init__(
        self, cache: ModelCache, model_dir: Path, folders: LoaderFolders | None = None, *, max_parallel: int = 4
    ):
        self.cache = cache
        self.model_dir = model_dir
        self.folders = folders or LoaderFolders()
        self._max_parallel = max(1, max_parallel)

    def model_inputs(self, graph: Mapping[str, Any]) -> list[_ModelInput]:
        found = []
        for node_id, node in graph.items():
            if not isinstance(node, Mapping) or not isinstance(node.get("inputs"), Mapping):
                continue
            class_type = str(node.get("class_type", ""))
            for input_name, value in node["inputs"].items():
                if not is_url(value):
                    continue
                folder = self.folders.folder_for(class_type, input_name)
                if folder is not None:
                    found.append(_ModelInput(str(node_id), str(input_name), value, folder))
        return found

    async def resolve_model_urls(
        self, graph: Mapping[str, Any], credentials: Sequence[Credential] = ()
    ) -> tuple[dict[str, Any], CachePin]:
        """A new graph with every loader URL replaced by its placed file name, and a lease pinning those files.
        The caller releases the lease when the job ends (also when it fails later)."""
        inputs = self.model_inputs(graph)
        lease = self.cache.pin()
        if not inputs:
            return dict(graph), lease
        limit = asyncio.Semaphore(self._max_parallel)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._stage(item, credentials, lease, limit)) for item in inputs]
        except BaseExceptionGroup as failed:
            lease.release()
            raise _first_error(failed.exceptions) from None
        except BaseException:
            lease.release()
            raise
        names = {(item.node_id, item.input_name): task.result() for item, task in zip(inputs, tasks, strict=True)}
        return _with_inputs(graph, names), lease

    async def _stage(
        self, item: _ModelInput, credentials: Sequence[Credential], lease: CachePin, limit: asyncio.Semaphore
    ) -> str:
        try:
            async with limit:
                model = await self.cache.fetch(item.url, credentials, lease=lease)
                folder_dir = self.model_dir / item.folder
                placed = await self.cache.place(model, folder_dir / model.filename)
        except URLRefused as exc:
            raise URLRefused(f"{item.field}: {exc.message}", field=item.field) from None
        except ComfyApiError as exc:
            raise InputStagingError(
                f"{item.field}: could not load the model at {cache_url(item.url)}: {exc.message}",
                field=item.field,
                details={"url": cache_url(item.url), "folder": item.folder, **exc.details},
            ) from exc
        except (OSError, ValueError) as exc:
            raise InputStagingError(
                f"{item.field}: could not load the model at {cache_url(item.url)}: {exc}",
                field=item.field,
                details={"url": cache_url(item.url), "folder": item.folder},
            ) from exc
        return placed.relative_to(folder_dir).as_posix()


def _first_error(errors: Iterable[BaseException]) -> BaseException:
    errors = list(errors)
    staging = [e for e in errors if isinstance(e, InputStagingError)]
    return staging[0] if staging else errors[0]


def _with_inputs(graph: Mapping[str, Any], names: Mapping[tuple[str, str], str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for node_id, node in graph.items():
        changed = {name: value for (nid, name), value in names.items() if nid == str(node_id)}
        if changed:
            result[node_id] = {**node, "inputs": {**node["inputs"], **changed}}
        else:
            result[node_id] = node
    return result
