"""Inputs marked inside a graph by node titles (`_meta.title`), for workflows shipped without a schema file.

A title that starts with `$` is a list of markers separated by spaces: `$name` marks the node's main input,
`$name.field` a given input, and a trailing `!` makes the input required. Reads the graph only; never mutates it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from comfyui_api.workflows.declarations import InputDeclaration
from comfyui_api.workflows.workflow import Target, is_link

_MARKER = re.compile(r"\$(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<field>[A-Za-z0-9_]+))?(?P<required>!?)")

MAIN_INPUTS: Mapping[str, str] = {
    "CLIPTextEncode": "text",
    "LoadImage": "image",
    "LoadImageMask": "image",
    "LoadImageOutput": "image",
    "LoadAudio": "audio",
    "LoadVideo": "file",
    "CheckpointLoaderSimple": "ckpt_name",
    "ImageOnlyCheckpointLoader": "ckpt_name",
    "UNETLoader": "unet_name",
    "VAELoader": "vae_name",
    "CLIPLoader": "clip_name",
    "LoraLoader": "lora_name",
    "LoraLoaderModelOnly": "lora_name",
    "ControlNetLoader": "control_net_name",
    "UpscaleModelLoader": "model_name",
}
"""The main input of well-known classes, for a bare `$name` marker. Other classes: an input called `value` (the
Primitive* nodes), else the node's only literal input."""


def marker_declarations(graph: Mapping[str, Any]) -> tuple[list[InputDeclaration], list[str]]:
    """The inputs marked in `graph`'s node titles, in graph order, and the problems found (one per bad title).

    A name marked on several nodes becomes one input writing to all of them.
    """
    targets: dict[str, list[Target]] = {}
    required: dict[str, bool] = {}
    origins: dict[str, list[str]] = {}
    problems: list[str] = []
    for node_id, node in graph.items():
        title = _title(node)
        if title is None:
            continue
        try:
            found = _parse_title(str(node_id), node, title)
        except ValueError as exc:
            problems.append(f"node {node_id} title {title!r}: {exc}")
            continue
        for name, target, is_required in found:
            targets.setdefault(name, []).append(target)
            required[name] = required.get(name, False) or is_required
            origins.setdefault(name, []).append(f"node {node_id} title {title!r}")
    declarations = [
        InputDeclaration(
            name=name,
            targets=tuple(found_targets),
            origin="; ".join(origins[name]),
            required=True if required[name] else None,
        )
        for name, found_targets in targets.items()
    ]
    return declarations, problems


def _title(node: Any) -> str | None:
    meta = node.get("_meta") if isinstance(node, Mapping) else None
    title = meta.get("title") if isinstance(meta, Mapping) else None
    if not isinstance(title, str) or not title.strip().startswith("$"):
        return None
    return title.strip()


def _parse_title(node_id: str, node: Mapping[str, Any], title: str) -> list[tuple[str, Target, bool]]:
    matches = []
    for token in title.split():
        match = _MARKER.fullmatch(token)
        if not match:
            raise ValueError(f"{token!r} is not a marker; write $name, $name.input_name, or add ! to require it")
        matches.append(match)
    return [
        (match["name"], Target(node_id, match["field"] or main_input(node_id, node)), bool(match["required"]))
        for match in matches
    ]


def main_input(node_id: str, node: Mapping[str, Any]) -> str:
    """The input a bare `$name` marker on this node refers to; ValueError when that is ambiguous."""
    class_type = str(node.get("class_type"))
    if class_type in MAIN_INPUTS:
        return MAIN_INPUTS[class_type]
    inputs = node.get("inputs")
    inputs = inputs if isinstance(inputs, Mapping) else {}
    if "value" in inputs:
        return "value"
    literal = [str(name) for name, value in inputs.items() if not is_link(value)]
    if len(literal) == 1:
        return literal[0]
    if not literal:
        raise ValueError(f"node {node_id} ({class_type}) has no literal input to mark")
    raise ValueError(
        f"node {node_id} ({class_type}) has several inputs ({', '.join(literal)}); "
        f"name one, e.g. ${literal[0]}.{literal[0]}"
    )
