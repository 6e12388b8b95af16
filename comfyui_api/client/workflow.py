"""Editing an API-format graph before it is sent: `--set NODE.inputs.NAME=VALUE` and `--input NODE.NAME=PATH_OR_URL`.
A local file becomes base64 (the server stages it); a URL is passed as is (the server fetches it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

InputValue = str | Path | bytes
_REMOTE = ("http://", "https://", "s3://", "data:")


def read_json_object(path: str | Path, what: str = "workflow") -> dict[str, Any]:
    """A JSON file holding one object; ValueError naming the file (as `what`) when it cannot be read or is not one."""
    try:
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable JSON {what} ({exc})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: a {what} is a JSON object")
    return loaded


def load_workflow(path: str | Path) -> dict[str, Any]:
    """A workflow file: an API-format graph, a `{"prompt": graph}` request body (its graph is returned), or a
    workflow as the editor saves it (returned as it is)."""
    loaded = read_json_object(path)
    prompt = loaded.get("prompt")
    return prompt if isinstance(prompt, dict) else loaded


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (`7`, `0.5`, `true`, `[1, 2]`, `"quoted"`), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _node_inputs(graph: Mapping[str, Any], node_id: str, key: str) -> dict[str, Any]:
    node = graph.get(node_id)
    if not isinstance(node, dict):
        raise ValueError(f"{key}: the workflow has no node {node_id!r}")
    inputs = node.setdefault("inputs", {})
    if not isinstance(inputs, dict):
        raise ValueError(f"{key}: node {node_id!r} has no inputs object")
    return inputs


def _split(key: str) -> tuple[str, str]:
    """`NODE.inputs.NAME` or `NODE.NAME` -> (node, name)."""
    node_id, _, rest = key.partition(".")
    name = rest.removeprefix("inputs.")
    if not node_id or not name:
        raise ValueError(f"{key}: expected NODE.inputs.NAME (or NODE.NAME)")
    return node_id, name


def apply_sets(graph: dict[str, Any], sets: Mapping[str, Any]) -> dict[str, Any]:
    """Set `graph[NODE]["inputs"][NAME] = value` for each `NODE.inputs.NAME` key; returns the graph."""
    for key, value in sets.items():
        node_id, name = _split(key)
        _node_inputs(graph, node_id, key)[name] = value
    return graph


def apply_inputs(graph: dict[str, Any], inputs: Mapping[str, InputValue]) -> dict[str, Any]:
    """Media inputs: bytes or a local file go as base64, a URL (http, https, s3, data) as is."""
    for key, value in inputs.items():
        node_id, name = _split(key)
        target = _node_inputs(graph, node_id, key)
        if isinstance(value, bytes):
            target[name] = base64.b64encode(value).decode("ascii")
        elif isinstance(value, str) and value.startswith(_REMOTE):
            target[name] = value
        else:
            path = Path(value)
            if not path.is_file():
                raise ValueError(f"{key}: {value} is neither a file nor an http(s)/s3 URL")
            target[name] = base64.b64encode(path.read_bytes()).decode("ascii")
    return graph
