"""What ComfyUI's /object_info says about one node input: its type, choices, bounds and tooltip.

Pure reading of an object_info mapping fetched by the caller; never talks to ComfyUI and never mutates the mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_UPLOAD_FLAGS = (("image_upload", "image"), ("audio_upload", "audio"), ("video_upload", "video"))


@dataclass(frozen=True)
class NodeInputInfo:
    """One input of one node class. `comfy_type` is "COMBO" for choice lists (V1 `[[...], {}]` and V3 `["COMBO",
    {"options": [...]}]` alike); `upload` is "image", "audio" or "video" when the combo lists uploaded files."""

    class_type: str
    name: str
    comfy_type: str
    options: tuple[Any, ...] = ()
    minimum: int | float | None = None
    maximum: int | float | None = None
    tooltip: str | None = None
    upload: str | None = None


def knows_class(object_info: Mapping[str, Any], class_type: str) -> bool:
    return isinstance(object_info.get(class_type), Mapping)


def input_names(object_info: Mapping[str, Any], class_type: str) -> list[str]:
    """The required and optional input names of a class, in ComfyUI's order ([] for an unknown class)."""
    sections = _input_sections(object_info, class_type)
    return [name for section in sections for name in section]


def node_input_info(object_info: Mapping[str, Any], class_type: str, name: str) -> NodeInputInfo | None:
    """The declared input `name` of `class_type`, or None when the class or the input is unknown.

    Hidden inputs (prompt, extra_pnginfo, unique_id) are not settable, so they are not found.
    """
    for section in _input_sections(object_info, class_type):
        if name in section:
            return _parse_spec(class_type, name, section[name])
    return None


def _input_sections(object_info: Mapping[str, Any], class_type: str) -> list[Mapping[str, Any]]:
    entry = object_info.get(class_type)
    if not isinstance(entry, Mapping):
        return []
    inputs = entry.get("input")
    if not isinstance(inputs, Mapping):
        return []
    return [section for key in ("required", "optional") if isinstance(section := inputs.get(key), Mapping)]


def _parse_spec(class_type: str, name: str, spec: Any) -> NodeInputInfo:
    # A spec is [TYPE, {options}] or [[choice, ...], {options}]; the options dict is optional. Anything else is a
    # shape we do not understand, reported as an opaque type so it is treated like a link.
    if isinstance(spec, str):
        spec = [spec]
    if not isinstance(spec, list | tuple) or not spec:
        return NodeInputInfo(class_type, name, comfy_type="?")
    head = spec[0]
    opts: Mapping[str, Any] = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
    if isinstance(head, list | tuple):
        comfy_type, options = "COMBO", tuple(head)
    elif isinstance(head, str):
        comfy_type = head
        raw_options = opts.get("options") if head == "COMBO" else None
        options = tuple(raw_options) if isinstance(raw_options, list | tuple) else ()
    else:
        return NodeInputInfo(class_type, name, comfy_type="?")
    upload = next((kind for flag, kind in _UPLOAD_FLAGS if opts.get(flag)), None)
    tooltip = opts.get("tooltip")
    return NodeInputInfo(
        class_type=class_type,
        name=name,
        comfy_type=comfy_type,
        options=options,
        minimum=_bound(opts.get("min")),
        maximum=_bound(opts.get("max")),
        tooltip=tooltip if isinstance(tooltip, str) and tooltip else None,
        upload=upload,
    )


def _bound(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value
