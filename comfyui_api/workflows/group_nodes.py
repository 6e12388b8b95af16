"""Group nodes, the older editor's reusable node groups (a node of type `workflow>NAME` or `workflow/NAME`, its inner
nodes in the workflow's `extra.groupNodes[NAME]`), rewritten as the subgraph `ui_format` expands, so that they run
with the ids the editor gave them (`<instance>:<index of the inner node>`).

The editor builds a group node's inputs and widgets from its inner nodes' definitions, in the inner nodes' order:
each inner node's widget inputs become the group's widgets (a seed's "control after generate" value follows it, as
on any node), and each of its other inputs that no inner link feeds becomes one of the group's inputs; an inner
output becomes one of the group's outputs unless it only feeds other inner nodes. The instance's `widgets_values`
and `inputs` follow that order. Only that plain form is converted; a group whose layout depends on more (primitive
or reroute nodes inside, widgets converted to inputs, renamed or hidden slots, muted or bypassed inner nodes) is
refused, naming the node and what it uses, rather than guessed at.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

GROUP_PREFIXES = ("workflow>", "workflow/")
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20  # the ids of a subgraph's input and output nodes, as the editor saves them
_UNSUPPORTED_INNER = {"PrimitiveNode": "a primitive node", "Reroute": "a reroute"}

WidgetInputs = Callable[[Mapping[str, Any]], list[tuple[str, bool]]]


class GroupRefused(ValueError):
    """A group node this conversion does not take; the message says what it uses."""


def group_name(kind: str) -> str | None:
    """NAME for a `workflow>NAME` (or `workflow/NAME`) node type, else None."""
    for prefix in GROUP_PREFIXES:
        if kind.startswith(prefix):
            return kind[len(prefix) :]
    return None


def group_as_subgraph(
    instance: Mapping[str, Any], groups: Mapping[str, Any], object_info: Mapping[str, Any], widget_inputs: WidgetInputs
) -> dict[str, Any]:
    """The subgraph (as `definitions.subgraphs` holds one) that this group node instance stands for, its inner nodes
    carrying the instance's widget values; GroupRefused saying why when it cannot be converted."""
    kind = str(instance.get("type", ""))
    name = group_name(kind)
    data = groups.get(name) if name is not None else None

    if not isinstance(data, Mapping) or not isinstance(data.get("nodes"), list):
        raise GroupRefused("the workflow does not define it (extra.groupNodes)")
    if data.get("config"):
        raise GroupRefused("it renames or hides some of its inputs or outputs")
    values = instance.get("widgets_values") or []
    if not isinstance(values, list):
        raise GroupRefused("it saves its widget values by name")
    ends = _ends(data.get("links"))
    links_to = {(target, target_slot): (origin, origin_slot) for origin, origin_slot, target, target_slot in ends}
    links_from = {(origin, origin_slot) for origin, origin_slot, _, _ in ends}
    external = {(origin, slot) for origin, slot, *_ in _ends(data.get("external"), size=2)}

    link_ids = itertools.count(1)
    nodes: list[dict[str, Any]] = []
    links: list[dict[str, Any]] = []
    inputs: list[dict[str, Any]] = []  # the group's inputs, in order
    outputs: list[dict[str, Any]] = []  # the group's outputs, in order
    used = 0  # widget values of the instance taken so far
    for index, inner in enumerate(data["nodes"]):
        inner_kind = str(inner.get("type", "")) if isinstance(inner, Mapping) else ""
        if inner_kind in _UNSUPPORTED_INNER:
            raise GroupRefused(f"it holds {_UNSUPPORTED_INNER[inner_kind]} (inner node {index})")
        definition = object_info.get(inner_kind)
        if not isinstance(definition, Mapping):
            if any(index in (origin, target) for origin, _, target, _ in ends):
                raise GroupRefused(f"it holds a node type ComfyUI does not know: {inner_kind!r} (inner node {index})")
            continue  # a note or another node with no part in the graph: the editor leaves it out too
        if inner.get("mode", 0) != 0:
            raise GroupRefused(f"it mutes or bypasses inner node {index}")
        if any(isinstance(slot, Mapping) and slot.get("widget") for slot in inner.get("inputs") or ()):
            raise GroupRefused(f"it has a widget converted to an input (inner node {index})")
        widgets = widget_inputs(definition)
        widget_names = {widget for widget, _ in widgets}
        count = len(widgets) + sum(1 for _, control in widgets if control)
        inner_values = values[used : used + count]
        used += count
        sections = definition.get("input") or {}
        slot_names = [
            input_name
            for section in ("required", "optional")
            for input_name in (sections.get(section) or {})
            if input_name not in widget_names
        ]
        slots: list[dict[str, Any]] = []
        for slot_index, input_name in enumerate(slot_names):
            link_id = next(link_ids)
            source = links_to.get((index, slot_index))
            if source is not None:
                links.append(_link(link_id, source[0], source[1], index, slot_index, ""))
            else:
                links.append(_link(link_id, SUBGRAPH_INPUT, len(inputs), index, slot_index, ""))
                inputs.append({"name": None, "linkIds": [link_id]})
            slots.append({"name": input_name, "link": link_id})
        for output_slot in range(len(definition.get("output") or ())):
            if (index, output_slot) in links_from and (index, output_slot) not in external:
                continue  # feeds only inner nodes: not one of the group's outputs
            links.append(_link(next(link_ids), index, output_slot, SUBGRAPH_OUTPUT, len(outputs), ""))
            outputs.append({"name": f"output {len(outputs)}", "type": definition["output"][output_slot]})
        node: dict[str, Any] = {"id": index, "type": inner_kind, "mode": 0, "inputs": slots}
        node["widgets_values"] = inner_values
        if inner.get("title"):
            node["title"] = inner["title"]
        nodes.append(node)
    if used != len(values):
        raise GroupRefused(f"it saves {len(values)} widget values where its inner nodes' widgets take {used}")
    slots_in = [slot for slot in instance.get("inputs") or () if isinstance(slot, Mapping)]
    if any(slot.get("widget") for slot in slots_in):
        raise GroupRefused("it has a widget converted to an input")
    if len(slots_in) != len(inputs):
        raise GroupRefused(f"it has {len(slots_in)} inputs where its inner nodes leave {len(inputs)} unlinked")
    for index, output in enumerate(instance.get("outputs") or ()):
        # A newer ComfyUI may give an inner node outputs it lacked when the group was saved (0.33: SaveImage's
        # pass-through): only an output something is linked to has to line up.
        if isinstance(output, Mapping) and output.get("links"):
            kind_there = outputs[index]["type"] if index < len(outputs) else None
            if kind_there is None or output.get("type") not in (None, kind_there):
                raise GroupRefused(
                    f"it has an output {index} ({output.get('type')}) its inner nodes do not account for"
                )
    for item, slot in zip(inputs, slots_in, strict=True):
        item["name"] = slot.get("name")  # the instance's own name for it: how the expansion finds its link
    return {"id": kind, "name": name, "inputs": inputs, "outputs": outputs, "nodes": nodes, "links": links}


def _ends(items: Any, *, size: int = 4) -> list[tuple[int, ...]]:
    """The first `size` numbers of each link as the group saves them (`[origin, slot, target, slot, ...]`; its
    `external` outputs: `[node, slot, type]`); GroupRefused when they are not numbers."""
    found: list[tuple[int, ...]] = []
    for item in items or ():
        if not isinstance(item, list | tuple) or len(item) < size or item[0] is None:
            continue
        try:
            found.append(tuple(int(part) for part in item[:size]))
        except (TypeError, ValueError):
            raise GroupRefused(f"it saves a malformed link {list(item)!r}") from None
    return found


def _link(link_id: int, origin: int, origin_slot: int, target: int, target_slot: int, kind: str) -> dict[str, Any]:
    return {
        "id": link_id,
        "origin_id": origin,
        "origin_slot": origin_slot,
        "target_id": target,
        "target_slot": target_slot,
        "type": kind,
    }
