"""Factories for workflow tests: ComfyUI's /object_info and small API-format graphs written to a WORKFLOW_DIR.

`data/object_info_core_nodes.json` is a capture from a real ComfyUI (0.3.64, CPU): 17 core nodes. The entries in
`data/object_info_extra_nodes.json` (VAEEncode, Primitive*) are written by hand in the same shape, for nodes the
capture does not hold.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.graphs import ksampler_node

DATA = Path(__file__).parent / "data"
SHIPPED_WORKFLOWS = Path(__file__).parents[3] / "manifests" / "workflows"
CAPTURED_CHECKPOINT = "random-sd15.safetensors"  # the only checkpoint of the captured ComfyUI


@cache
def _object_info() -> dict[str, Any]:
    info = json.loads((DATA / "object_info_core_nodes.json").read_text())
    info.update(json.loads((DATA / "object_info_extra_nodes.json").read_text()))
    return info


def object_info() -> dict[str, Any]:
    """A fresh copy, so a test may edit it."""
    return copy.deepcopy(_object_info())


def txt2img_graph(*, titles: dict[str, str] | None = None) -> dict[str, Any]:
    """The usual text-to-image graph (ids as ComfyUI's default workflow), with optional `_meta.title`s by node id."""
    graph: dict[str, Any] = {
        "3": ksampler_node(seed=5, steps=20, cfg=8.0),
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CAPTURED_CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    for node_id, title in (titles or {}).items():
        graph[node_id]["_meta"] = {"title": title}
    return graph


def img2img_graph(*, titles: dict[str, str] | None = None) -> dict[str, Any]:
    graph = txt2img_graph()
    del graph["5"]
    graph["10"] = {"class_type": "LoadImage", "inputs": {"image": "example.png"}}
    graph["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    graph["3"]["inputs"]["latent_image"] = ["11", 0]
    graph["3"]["inputs"]["denoise"] = 0.6
    for node_id, title in (titles or {}).items():
        graph[node_id]["_meta"] = {"title": title}
    return graph


def write_workflow(
    workflow_dir: Path, route: str, graph: Any, schema: str | None = None, *, schema_suffix: str = ".yaml"
) -> Path:
    """Write WORKFLOW_DIR/<route>.json (and <route><schema_suffix> when `schema` is given); returns the graph path."""
    graph_path = workflow_dir / f"{route}.json"
    graph_path.parent.mkdir(parents=True, exist_ok=True)
    graph_path.write_text(graph if isinstance(graph, str) else json.dumps(graph))
    if schema is not None:
        graph_path.with_name(graph_path.name[: -len(".json")] + schema_suffix).write_text(schema)
    return graph_path


PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
"""A 1x1 PNG, base64-encoded: a valid `image` input value."""
