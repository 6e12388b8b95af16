"""Workflows as the editor saves them (UI format: `nodes`, `links`, `widgets_values`) turned into the API format
ComfyUI's /prompt runs, with the node definitions of ComfyUI's /object_info. No I/O: the caller brings both.

The rules the editor itself applies when it queues a workflow:
- widget values are matched to a node's widget inputs in definition order (required, then optional); a widget with
  `control_after_generate` (a seed) is followed by the control's own slot, which is skipped; a dict of values is
  matched by name;
- an input with a link takes the value at the link's origin: another node's output `[id, slot]`, through any
  `Reroute`, the value of a `PrimitiveNode`, or through a bypassed node (mode 4) to its input of the same type;
- muted nodes (mode 2) are left out, and so is any input linked to one; notes and other UI-only nodes are skipped;
- `_meta.title` keeps the node's title.
Group nodes and subgraphs are refused (ConversionError naming the node), as is a type ComfyUI does not know.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MUTED, BYPASSED = 2, 4
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
_SEED_NAMES = frozenset({"seed", "noise_seed"})
_MAX_HOPS = 1000  # a chain of reroutes or bypassed nodes longer than this is a loop


class ConversionError(ValueError):
    """A UI-format workflow that cannot be converted; `node_id` names the node when one is at fault."""

    def __init__(self, message: str, *, node_id: str | None = None):
        self.node_id = node_id
        super().__init__(message)


@dataclass(frozen=True)
class _Link:
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str


def widget_inputs(definition: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """A node type's widget inputs in the order the editor lays them out: (name, followed by a control slot)."""
    found: list[tuple[str, bool]] = []
    sections = definition.get("input") or {}
    for section in ("required", "optional"):
        for name, spec in (sections.get(section) or {}).items():
            if not isinstance(spec, list | tuple) or not spec:
                continue
            kind = spec[0]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], Mapping) else {}
            if options.get("forceInput"):
                continue
            if isinstance(kind, list) or kind in WIDGET_TYPES:
                control = bool(options.get("control_after_generate")) or (kind == "INT" and name in _SEED_NAMES)
                found.append((name, control))
    return found


def ui_to_api(document: Mapping[str, Any], object_info: Mapping[str, Any]) -> dict[str, Any]:
    """The API-format graph of a UI-format workflow; ConversionError when a node cannot be converted."""
    nodes = {str(node.get("id")): node for node in document.get("nodes") or () if isinstance(node, Mapping)}
    links = _links(document.get("links") or ())
    subgraphs = {str(graph.get("id")) for graph in (document.get("definitions") or {}).get("subgraphs") or ()}
    graph: dict[str, Any] = {}
    for node_id, node in nodes.items():
        kind = str(node.get("type", ""))
        mode = node.get("mode", 0)
        if mode in (MUTED, BYPASSED) or kind in UI_ONLY_TYPES:
            continue
        if kind in subgraphs or kind.startswith("workflow>") or kind.startswith("workflow/"):
            raise ConversionError(
                f"node {node_id} ({kind}) is a subgraph or group node, which cannot be converted here; "
                "use Workflow > Export (API) in the editor",
                node_id=node_id,
            )
        definition = object_info.get(kind)
        if not isinstance(definition, Mapping):
            if not _is_connected(node):
                continue  # a UI-only node from an extension (a label, a note): nothing to run
            raise ConversionError(f"node {node_id}: ComfyUI has no node type {kind!r}", node_id=node_id)
        inputs = _widget_values(node_id, node, definition)
        for slot in node.get("inputs") or ():
            if not isinstance(slot, Mapping) or slot.get("link") is None:
                continue
            name = str((slot.get("widget") or {}).get("name") or slot.get("name"))
            value = _resolve(links.get(slot["link"]), nodes, links, node_id, name)
            if value is _DROPPED:
                inputs.pop(name, None)
            else:
                inputs[name] = value
        entry: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        title = node.get("title") or definition.get("display_name") or kind
        entry["_meta"] = {"title": str(title)}
        graph[node_id] = entry
    if not graph:
        raise ConversionError("the workflow has no node ComfyUI can run")
    return graph


def _links(raw: Sequence[Any]) -> dict[Any, _Link]:
    """Links as the editor saves them: `[id, origin, slot, target, slot, type]` or objects (newer editors)."""
    found: dict[Any, _Link] = {}
    for item in raw:
        if isinstance(item, list | tuple) and len(item) >= 5:
            link_id, origin, origin_slot, target, target_slot = item[:5]
            kind = item[5] if len(item) > 5 else ""
        elif isinstance(item, Mapping):
            link_id, origin, origin_slot = item.get("id"), item.get("origin_id"), item.get("origin_slot")
            target, target_slot, kind = item.get("target_id"), item.get("target_slot"), item.get("type", "")
        else:
            continue
        found[link_id] = _Link(str(origin), int(origin_slot or 0), str(target), int(target_slot or 0), str(kind))
    return found


def _is_connected(node: Mapping[str, Any]) -> bool:
    linked_in = any(isinstance(s, Mapping) and s.get("link") is not None for s in node.get("inputs") or ())
    linked_out = any(isinstance(s, Mapping) and s.get("links") for s in node.get("outputs") or ())
    return linked_in or linked_out


def _widget_values(node_id: str, node: Mapping[str, Any], definition: Mapping[str, Any]) -> dict[str, Any]:
    values = node.get("widgets_values")
    widgets = widget_inputs(definition)
    if isinstance(values, Mapping):  # some extensions save widget values by name
        return {name: values[name] for name, _ in widgets if name in values}
    if not isinstance(values, list):
        return {}
    found: dict[str, Any] = {}
    index = 0
    for name, control in widgets:
        if index >= len(values):
            break
        found[name] = values[index]
        index += 1
        if control and index < len(values) and _is_control_value(values[index]):
            index += 1  # the seed's "control after generate" choice: a UI setting, not an input
    return found


def _is_control_value(value: Any) -> bool:
    return value in ("fixed", "increment", "decrement", "randomize")


class _Dropped:
    pass


_DROPPED = _Dropped()


def _resolve(
    link: _Link | None, nodes: Mapping[str, Mapping[str, Any]], links: Mapping[Any, _Link], node_id: str, name: str
) -> Any:
    """The value an input linked by `link` receives: `[origin, slot]`, a primitive's value, or _DROPPED."""
    for _ in range(_MAX_HOPS):
        if link is None:
            return _DROPPED
        origin = nodes.get(link.origin_id)
        if origin is None:
            raise ConversionError(
                f"node {node_id} input {name}: linked to missing node {link.origin_id}", node_id=node_id
            )
        kind, mode = origin.get("type"), origin.get("mode", 0)
        if mode == MUTED:
            return _DROPPED
        if kind == "Reroute":
            link = _input_link(origin, 0, links)
        elif kind == "PrimitiveNode":
            values = origin.get("widgets_values")
            if not isinstance(values, list) or not values:
                raise ConversionError(f"node {link.origin_id} (PrimitiveNode) holds no value", node_id=link.origin_id)
            return values[0]
        elif mode == BYPASSED:
            link = _pass_through(origin, link, links)
        else:
            return [link.origin_id, link.origin_slot]
    raise ConversionError(f"node {node_id} input {name}: its links form a loop", node_id=node_id)


def _input_link(node: Mapping[str, Any], index: int, links: Mapping[Any, _Link]) -> _Link | None:
    slots = node.get("inputs") or ()
    if index >= len(slots) or not isinstance(slots[index], Mapping):
        return None
    link_id = slots[index].get("link")
    return links.get(link_id) if link_id is not None else None


def _pass_through(node: Mapping[str, Any], link: _Link, links: Mapping[Any, _Link]) -> _Link | None:
    """A bypassed node hands its output slot the input of the same type (the same index first, as the editor)."""
    outputs = node.get("outputs") or ()
    wanted = link.type or (outputs[link.origin_slot].get("type") if link.origin_slot < len(outputs) else "")
    slots = list(node.get("inputs") or ())
    order = [link.origin_slot, *range(len(slots))] if link.origin_slot < len(slots) else list(range(len(slots)))
    for index in order:
        slot = slots[index]
        if isinstance(slot, Mapping) and slot.get("type") == wanted and slot.get("link") is not None:
            return links.get(slot["link"])
    return None
