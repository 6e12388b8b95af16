"""Primitive and text nodes: PrimitiveString(Multiline), PrimitiveInt, PrimitiveFloat, PrimitiveBoolean,
StringConcatenate and PreviewAny."""

from __future__ import annotations

import json
import sys
from typing import Any

from comfyui_api.simulator.nodes.spec import ANY_TYPE, NodeContext, NodeSpec, inp

_PRIMITIVES = "comfy_extras.nodes_primitive"


def _identity(ctx: NodeContext, value: Any) -> tuple:
    return (value,)


def _concatenate(ctx: NodeContext, string_a: str, string_b: str, delimiter: str) -> tuple:
    return (delimiter.join((string_a, string_b)),)


def _preview_any(ctx: NodeContext, source: Any = None) -> dict[str, Any]:
    value = "None"
    if isinstance(source, str):
        value = source
    elif isinstance(source, (int, float, bool)):
        value = str(source)
    elif source is not None:
        try:
            value = json.dumps(source)
        except Exception:
            try:
                value = str(source)
            except Exception:
                value = "source exists, but could not be serialized."
    return {"ui": {"text": (value,)}}


def _primitive(name: str, display: str, kind: str, options: dict[str, Any]) -> NodeSpec:
    return NodeSpec(
        name=name,
        display_name=display,
        category="utils/primitive",
        python_module=_PRIMITIVES,
        v3=True,
        required={"value": inp(kind, options)},
        outputs=(kind,),
        execute=_identity,
    )


NODES = (
    _primitive("PrimitiveString", "String", "STRING", {"multiline": False}),
    _primitive("PrimitiveStringMultiline", "String (Multiline)", "STRING", {"multiline": True}),
    _primitive("PrimitiveInt", "Int", "INT", {"min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True}),
    _primitive("PrimitiveFloat", "Float", "FLOAT", {"min": -sys.maxsize, "max": sys.maxsize}),
    _primitive("PrimitiveBoolean", "Boolean", "BOOLEAN", {}),
    NodeSpec(
        name="PreviewAny",
        category="utils",
        python_module="comfy_extras.nodes_preview_any",
        display_name="Preview Any",
        output_node=True,
        required={"source": inp(ANY_TYPE, {})},
        execute=_preview_any,
    ),
    NodeSpec(
        name="StringConcatenate",
        category="utils/string",
        python_module="comfy_extras.nodes_string",
        display_name="Concatenate",
        v3=True,
        required={
            "string_a": inp("STRING", {"multiline": True}),
            "string_b": inp("STRING", {"multiline": True}),
            "delimiter": inp("STRING", {"default": "", "multiline": False}),
        },
        outputs=("STRING",),
        execute=_concatenate,
    ),
)
