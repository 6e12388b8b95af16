"""Pure helpers on ComfyUI API-format graphs (`{node_id: {"class_type": ..., "inputs": {...}}}`).

Output nodes, links, filename prefixes, path normalisation and media inputs. No I/O, no knowledge of jobs; every
function returns a new graph and never mutates the caller's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Graph = Mapping[str, Any]
MediaKind = Literal["image", "audio", "video", "directory"]

# Core output nodes (captured object_info `output_node: true`) plus common custom ones.
KNOWN_OUTPUT_CLASSES = frozenset(
    {
        "SaveImage", "PreviewImage", "SaveLatent", "MaskPreview", "CheckpointSave", "CLIPSave", "VAESave",
        "ModelSave", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveSVGNode", "ImageOnlyCheckpointSave",
        "SaveLoRANode", "LossGraphNode", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus", "PreviewAudio", "LoraSave",
        "Preview3D", "Preview3DAnimation", "SaveWEBM", "SaveVideo", "SaveGLB", "PreviewAny", "SaveImageWebsocket",
        "VHS_VideoCombine",
    }
)  # fmt: skip

# Nodes that save media under `filename_prefix` and get one added when the graph leaves it out.
FILENAME_PREFIX_CLASSES = frozenset(
    {
        "SaveImage", "SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveAudio", "SaveAudioMP3", "SaveAudioOpus",
        "SaveVideo", "SaveWEBM", "SaveLatent", "VHS_VideoCombine",
    }
)  # fmt: skip

# Which inputs of which loaders name a media file (or, for `directory`, a folder of images).
MEDIA_INPUTS: Mapping[str, Mapping[str, MediaKind]] = {
    "LoadImage": {"image": "image"},
    "LoadImageMask": {"image": "image"},
    "LoadAudio": {"audio": "audio"},
    "LoadVideo": {"file": "video", "video": "video"},
    "VHS_LoadVideo": {"video": "video"},
    "VHS_LoadVideoPath": {"video": "video"},
    "VHS_LoadVideoFFmpeg": {"video": "video"},
    "VHS_LoadVideoFFmpegPath": {"video": "video"},
    "VHS_LoadAudio": {"audio_file": "audio"},
    "VHS_LoadAudioUpload": {"audio": "audio"},
    "VHS_LoadImages": {"directory": "directory"},
    "VHS_LoadImagesPath": {"directory": "directory"},
}

_FILE_EXTENSIONS = frozenset(
    {
        "safetensors", "ckpt", "pt", "pth", "bin", "gguf", "sft", "onnx", "pkl", "yaml", "yml", "json", "txt",
        "latent", "png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff", "exr", "mp4", "webm", "mov", "mkv",
        "avi", "m4v", "wav", "flac", "mp3", "ogg", "opus", "m4a", "aac", "glb", "obj", "ply", "npy", "npz",
    }
)  # fmt: skip
_PATH_NAME_SUFFIXES = ("_name", "_path", "_file", "_dir", "directory", "filename_prefix")
_PATH_NAMES = frozenset({"image", "video", "audio", "file", "path", "model", "ckpt", "lora"})
# Inputs that hold prose or patterns: a backslash there is the user's text, never a path separator.
_TEXT_NAMES = frozenset({"text", "prompt", "positive", "negative", "string", "pattern", "regex", "replace", "find"})
_TEXT_NAME_PREFIXES = ("text", "prompt", "string", "system")
# A Windows-style relative or drive path: non-empty segments joined by single backslashes, nothing text-like.
_WINDOWS_PATH = re.compile(r'^(?:[A-Za-z]:\\)?[^\\\r\n\t*?"<>|]+(?:\\[^\\\r\n\t*?"<>|]+)+$')


@dataclass(frozen=True)
class MediaInput:
    """One input that names a media file (or a list of images, for `directory`), to be staged before queueing."""

    node_id: str
    input_name: str
    value: str | list[str]
    kind: MediaKind


def is_link(value: Any) -> bool:
    """True for a link to another node's output: `[node_id_string, output_index]`."""
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _nodes(graph: Graph) -> Iterator[tuple[str, str | None, Mapping[str, Any]]]:
    """(node_id, class_type, inputs) for every well-formed node."""
    for node_id, node in graph.items():
        if not isinstance(node, Mapping):
            continue
        class_type = node.get("class_type")
        inputs = node.get("inputs")
        yield (
            str(node_id),
            class_type if isinstance(class_type, str) else None,
            inputs if isinstance(inputs, Mapping) else {},
        )


def output_node_ids(
    graph: Graph, object_info: Mapping[str, Any] | None = None, *, output_classes: frozenset[str] = KNOWN_OUTPUT_CLASSES
) -> list[str]:
    """Ids of the nodes ComfyUI treats as outputs, in graph order: a class in `output_classes` (by default the
    built-in list; pass what the running ComfyUI reported), or one object_info marks `output_node`."""
    found = []
    for node_id, class_type, _ in _nodes(graph):
        if class_type is None:
            continue
        info = object_info.get(class_type) if object_info else None
        if class_type in output_classes or (isinstance(info, Mapping) and info.get("output_node") is True):
            found.append(node_id)
    return found


def with_input(graph: Graph, node_id: str, name: str, value: Any) -> dict[str, Any]:
    """A copy of `graph` with one input of one node set. KeyError if there is no such node."""
    if node_id not in graph or not isinstance(graph[node_id], Mapping):
        raise KeyError(f"the graph has no node {node_id!r}")
    node = dict(graph[node_id])
    inputs = dict(node.get("inputs") or {})
    inputs[name] = value
    node["inputs"] = inputs
    new_graph = dict(graph)
    new_graph[node_id] = node
    return new_graph


def prefixed_filename(prefix: str, job_id: str) -> str:
    """`sub/name` -> `sub/<job_id>_name`; `name` -> `<job_id>_name`; empty -> `<job_id>`. Idempotent.

    The subfolder is kept so the caller's layout survives; the job id leads the file name so every file of a job
    is unique and can be found by its prefix.
    """
    folder, _, name = prefix.replace("\\", "/").rpartition("/")
    if name != job_id and not name.startswith(f"{job_id}_"):
        name = f"{job_id}_{name}" if name else job_id
    return f"{folder}/{name}" if folder else name


def rewrite_filename_prefixes(graph: Graph, job_id: str) -> dict[str, Any]:
    """Every string `filename_prefix` starts with the job id (see `prefixed_filename`); known saver nodes without
    one get `<job_id>`. A prefix that is a link to another node is left alone."""
    new_graph = dict(graph)
    for node_id, class_type, inputs in _nodes(graph):
        if "filename_prefix" in inputs:
            current = inputs["filename_prefix"]
            if isinstance(current, str):
                new_graph = with_input(new_graph, node_id, "filename_prefix", prefixed_filename(current, job_id))
        elif class_type in FILENAME_PREFIX_CLASSES:
            new_graph = with_input(new_graph, node_id, "filename_prefix", job_id)
    return new_graph


def filename_prefixes(graph: Graph) -> list[tuple[str, str]]:
    """(node id, prefix) of every string `filename_prefix` input."""
    return [
        (node_id, inputs["filename_prefix"])
        for node_id, _, inputs in _nodes(graph)
        if isinstance(inputs.get("filename_prefix"), str)
    ]


def _looks_like_windows_path(name: str, value: str) -> bool:
    if "\\" not in value or len(value) > 1024 or not _WINDOWS_PATH.match(value):
        return False
    if name in _PATH_NAMES or name.endswith(_PATH_NAME_SUFFIXES):
        return True
    if name in _TEXT_NAMES or name.startswith(_TEXT_NAME_PREFIXES):
        return False
    _, dot, extension = value.rpartition(".")
    return bool(dot) and extension.lower() in _FILE_EXTENSIONS


def normalise_paths(graph: Graph) -> dict[str, Any]:
    """`SDXL\\model.safetensors` -> `SDXL/model.safetensors` in string inputs that look like file paths.

    Free text (prompts, regex patterns) is left alone: a value must be path-shaped (no empty segment, no line
    breaks or wildcard characters) and either sit in a path-like input (`*_name`, `image`, ...) or end in a known
    file extension outside a text input (`text*`, `prompt*`, `pattern`, ...).
    """
    new_graph = dict(graph)
    for node_id, _, inputs in _nodes(graph):
        for name, value in inputs.items():
            if isinstance(value, str) and _looks_like_windows_path(str(name), value):
                new_graph = with_input(new_graph, node_id, name, value.replace("\\", "/"))
    return new_graph


def _media_value(value: Any, kind: MediaKind) -> str | list[str] | None:
    if isinstance(value, str):
        return value if value.strip() else None
    if kind == "directory" and isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def media_inputs(graph: Graph) -> list[MediaInput]:
    """Inputs naming media to stage: loader inputs from MEDIA_INPUTS, plus a string `image` on any node."""
    found = []
    for node_id, class_type, inputs in _nodes(graph):
        wanted: dict[str, MediaKind] = dict(MEDIA_INPUTS.get(class_type or "", {}))
        wanted.setdefault("image", "image")
        for name, kind in wanted.items():
            value = _media_value(inputs.get(name), kind)
            if value is not None:
                found.append(MediaInput(node_id, name, value, kind))
    return found


def is_ui_format(document: Mapping[str, Any]) -> bool:
    """True for a workflow as the editor saves it (`nodes` and `links` lists), which ComfyUI's /prompt cannot run;
    the API format is what Workflow > Export (API) writes."""
    return isinstance(document.get("nodes"), list) and isinstance(document.get("links"), list)


def rename_inputs(graph: Graph, names: Mapping[str, str]) -> dict[str, Any]:
    """`graph` with every input whose value is one of `names`' keys set to its value (a file the caller sent by
    name, now staged under another name)."""
    renamed: dict[str, Any] = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        if not isinstance(inputs, Mapping) or not any(isinstance(v, str) and v in names for v in inputs.values()):
            renamed[node_id] = node
            continue
        new_inputs = {key: names[v] if isinstance(v, str) and v in names else v for key, v in inputs.items()}
        renamed[node_id] = {**node, "inputs": new_inputs}
    return renamed
