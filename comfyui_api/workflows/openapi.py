"""JSON Schema documents for workflow endpoints: each input, the `input` object, an example body, and the /prompt
options merged beside `input`.

Pure functions returning plain dicts (OpenAPI 3.1 schemas); the route builder hands them to Litestar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from msgspec import UNSET

from comfyui_api.workflows.workflow import InputKind, Workflow, WorkflowInput

_JSON_TYPES = {
    InputKind.STRING: "string",
    InputKind.INTEGER: "integer",
    InputKind.NUMBER: "number",
    InputKind.BOOLEAN: "boolean",
    InputKind.IMAGE: "string",
    InputKind.AUDIO: "string",
    InputKind.VIDEO: "string",
}
_MEDIA_EXAMPLES = {
    InputKind.IMAGE: "https://example.com/input.png",
    InputKind.AUDIO: "https://example.com/input.wav",
    InputKind.VIDEO: "https://example.com/input.mp4",
}
_REF_PREFIX = "#/$defs/"


@dataclass(frozen=True)
class RequestDoc:
    """The documented body of POST /workflow/<route>: `input` plus every /prompt option but `prompt`."""

    properties: dict[str, Any]
    required: list[str]
    example: dict[str, Any]
    additional_properties: bool | None


def input_schema(spec: WorkflowInput) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    if spec.kind in _JSON_TYPES:
        schema["type"] = _JSON_TYPES[spec.kind]
    elif spec.options and all(isinstance(option, str) for option in spec.options):
        schema["type"] = "string"
    if spec.options:
        schema["enum"] = list(spec.options)
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    if spec.default is not UNSET:
        schema["default"] = spec.default
    notes = [spec.description] if spec.description else []
    if spec.kind.is_media:
        notes.append(f"Give the {spec.kind.value} as a URL (http, https, s3, ...) or as base64 (a data: URI is fine).")
    if spec.randomize:
        notes.append("A random value when omitted.")
    targets = ", ".join(str(target) for target in spec.targets)
    notes.append(f"Sets {targets}.")
    schema["description"] = " ".join(notes)
    if spec.example is not UNSET:
        schema["examples"] = [spec.example]
    return schema


def input_object_schema(workflow: Workflow) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "description": f"The inputs of the {workflow.route} workflow.",
        "properties": {spec.name: input_schema(spec) for spec in workflow.inputs},
        "additionalProperties": False,
    }
    required = [spec.name for spec in workflow.inputs if spec.required]
    if required:
        schema["required"] = required
    return schema


def example_input(workflow: Workflow) -> dict[str, Any]:
    """A valid `input` object: the required inputs, and every input that declares an example."""
    example: dict[str, Any] = {}
    for spec in workflow.inputs:
        if spec.example is not UNSET:
            example[spec.name] = spec.example
        elif spec.required:
            example[spec.name] = _placeholder(spec)
    return example


def request_doc(workflow: Workflow, options: Mapping[str, Any] | None = None) -> RequestDoc:
    """`options` is the JSON Schema of POST /prompt's body (see `options_schema`); its `prompt` is left out."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    additional: bool | None = None
    if options is not None:
        properties.update({k: v for k, v in options.get("properties", {}).items() if k not in ("prompt", "input")})
        required.extend(name for name in options.get("required", []) if name in properties)
        if options.get("additionalProperties") is False:
            additional = False
    properties = {"input": input_object_schema(workflow), **properties}
    if any(spec.required for spec in workflow.inputs):
        required.insert(0, "input")
    return RequestDoc(properties, required, {"input": example_input(workflow)}, additional)


def options_schema(options_type: Any) -> dict[str, Any]:
    """The JSON Schema of a msgspec-compatible type (e.g. POST /prompt's request Struct), references inlined."""
    document = msgspec.json.schema(options_type)
    definitions = document.pop("$defs", {})
    resolved = _inline(document, definitions, frozenset())
    return resolved if isinstance(resolved, dict) else {}


def _inline(node: Any, definitions: Mapping[str, Any], seen: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_inline(item, definitions, seen) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str) and reference.startswith(_REF_PREFIX):
        name = reference[len(_REF_PREFIX) :]
        if name in seen or name not in definitions:
            return {}  # a recursive type: documented as "any" below the first level
        return _inline(definitions[name], definitions, seen | {name})
    return {key: _inline(value, definitions, seen) for key, value in node.items()}


def _placeholder(spec: WorkflowInput) -> Any:
    if spec.options:
        return spec.options[0]
    if spec.kind.is_media:
        return _MEDIA_EXAMPLES[spec.kind]
    if spec.kind is InputKind.BOOLEAN:
        return False
    if spec.kind in (InputKind.INTEGER, InputKind.NUMBER):
        return spec.minimum if spec.minimum is not None else 0
    return "text"
