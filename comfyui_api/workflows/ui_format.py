"""Workflows as the editor saves them (UI format: `nodes`, `links`, `widgets_values`) turned into the API format
ComfyUI's /prompt runs, with the node definitions of ComfyUI's /object_info. No I/O: the caller brings both.

The rules the editor itself applies when it queues a workflow:
- widget values are matched to a node's widget inputs in definition order (required, then optional); a widget with
  `control_after_generate` (a seed) is followed by the control's own slot, which is skipped (a list widget's
  control is followed by its filter, skipped too); a dict of values is matched by name;
- an input with a link takes the value at the link's origin: another node's output `[id, slot]`, through any
  `Reroute`, the value of a `PrimitiveNode`, or through a bypassed node (mode 4) to its input of the same type;
- muted nodes (mode 2) are left out, and so is any input linked to one; notes and other UI-only nodes are skipped;
- `_meta.title` keeps the node's title;
- subgraphs (`definitions.subgraphs`, the newer editor's reusable node groups) are expanded: a node whose type is a
  subgraph's id stands for a copy of that subgraph's nodes, with ids `<instance>:<inner id>` (nested:
  `12:5:3`), as the editor numbers them. Inside, a link from the subgraph's input node (id -10) takes what the
  instance receives on the input of the same name; an input the instance leaves unlinked takes the instance's
  widget value for it (its `widgets_values` follow the subgraph's widget-fed inputs in order) or, when the instance
  holds none (newer editors keep promoted widgets' values on the inner node), the inner node's own value. A link
  from the instance's output j follows the subgraph's link into its output node (id -20) slot j. A muted instance is
  left out whole; a bypassed one is wired through like any bypassed node.
- group nodes (the older editor's `workflow>NAME` types, defined in `extra.groupNodes`) are rewritten as subgraphs
  and expanded likewise (ids `<instance>:<inner index>`); `group_nodes.py` says which groups it takes, and a group
  it does not is refused (ConversionError naming the node).
A node type ComfyUI does not know is refused too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from comfyui_api.workflows.group_nodes import (
    SUBGRAPH_INPUT,
    SUBGRAPH_OUTPUT,
    GroupRefused,
    group_as_subgraph,
    group_name,
    is_list_kind,
)

MUTED, BYPASSED = 2, 4
WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UI_ONLY_TYPES = frozenset({"Note", "MarkdownNote", "Reroute", "PrimitiveNode"})
_INPUT_NODE, _OUTPUT_NODE = str(SUBGRAPH_INPUT), str(SUBGRAPH_OUTPUT)  # as `_Link` holds ids: text
_SEED_NAMES = frozenset({"seed", "noise_seed"})
_MAX_HOPS = 1000  # a chain of reroutes or bypassed nodes longer than this is a loop
_MAX_DEPTH = 32  # subgraphs nested deeper than this contain themselves


class ConversionError(ValueError):
    """A UI-format workflow that cannot be converted; `node_id` names the node when one is at fault."""

    def __init__(self, message: str, *, node_id: str | None = None):
        self.node_id = node_id
        super().__init__(message)


@dataclass(frozen=True)
class _Link:
    """A link inside one graph level: `scope` is "" at the top and "<instance id>:" inside a subgraph instance;
    `origin` and `target` are the ids as that level saves them (-10 and -20 for the subgraph's boundary)."""

    scope: str
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: str


@dataclass(frozen=True)
class _Node:
    """A node of the expanded workflow: `id` is its execution id (`12`, or `12:5` inside instance 12), `scope` the
    level its links belong to; `subgraph` is the definition when the node is an expanded subgraph instance."""

    id: str
    raw: Mapping[str, Any]
    scope: str
    subgraph: Mapping[str, Any] | None = None


@dataclass
class _Workflow:
    """The whole workflow with every subgraph instance expanded: nodes by execution id, links by (scope, link id),
    and the links into each subgraph's output node by (scope, slot)."""

    nodes: dict[str, _Node]
    links: dict[tuple[str, Any], _Link]
    into_outputs: dict[tuple[str, int], _Link] = field(default_factory=dict)

    def input_link(self, node: _Node, slot: Mapping[str, Any]) -> _Link | None:
        link_id = slot.get("link")
        return self.links.get((node.scope, link_id)) if link_id is not None else None


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
    workflow = _Workflow({}, {})
    extra = document.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, Mapping) else None
    _expand(document, "", _Definitions(_subgraphs(document), groups or {}, object_info), workflow, depth=0)
    graph: dict[str, Any] = {}
    for node_id, node in workflow.nodes.items():
        kind = str(node.raw.get("type", ""))
        mode = node.raw.get("mode", 0)
        if mode in (MUTED, BYPASSED) or kind in UI_ONLY_TYPES or node.subgraph is not None:
            continue
        definition = object_info.get(kind)
        if not isinstance(definition, Mapping):
            if not _is_connected(node.raw):
                continue  # a UI-only node from an extension (a label, a note): nothing to run
            raise ConversionError(f"node {node_id}: ComfyUI has no node type {kind!r}", node_id=node_id)
        inputs = _widget_values(node.raw, definition)
        for slot in node.raw.get("inputs") or ():
            if not isinstance(slot, Mapping) or slot.get("link") is None:
                continue
            name = str((slot.get("widget") or {}).get("name") or slot.get("name"))
            value = _resolve(workflow.input_link(node, slot), workflow, node_id, name)
            if value is _DROPPED:
                inputs.pop(name, None)
            elif value is not _KEPT:
                inputs[name] = value
        entry: dict[str, Any] = {"class_type": kind, "inputs": inputs}
        title = node.raw.get("title") or definition.get("display_name") or kind
        entry["_meta"] = {"title": str(title)}
        graph[node_id] = entry
    if not graph:
        raise ConversionError("the workflow has no node ComfyUI can run")
    return graph


def _subgraphs(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    definitions = document.get("definitions")
    found = definitions.get("subgraphs") if isinstance(definitions, Mapping) else None
    return {str(graph.get("id")): graph for graph in found or () if isinstance(graph, Mapping)}


@dataclass(frozen=True)
class _Definitions:
    """What instances stand for: subgraphs by id, group nodes by name (`extra.groupNodes`), and ComfyUI's nodes."""

    subgraphs: Mapping[str, Mapping[str, Any]]
    groups: Mapping[str, Any]
    object_info: Mapping[str, Any]

    def of(self, node_id: str, raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The subgraph `raw` is an instance of (a group node's, rewritten as one), or None for a plain node."""
        kind = str(raw.get("type", ""))
        if kind in self.subgraphs:
            return self.subgraphs[kind]
        if group_name(kind) is None:
            return None
        try:
            return group_as_subgraph(raw, self.groups, self.object_info, widget_inputs)
        except GroupRefused as exc:
            raise ConversionError(
                f"node {node_id} ({kind}) is a group node that cannot be converted: {exc}; convert it to a subgraph "
                "in the editor",
                node_id=node_id,
            ) from None


def _expand(level: Mapping[str, Any], scope: str, definitions: _Definitions, into: _Workflow, *, depth: int) -> None:
    """Add one graph level's nodes and links, expanding each live subgraph instance into its own scope."""
    if depth > _MAX_DEPTH:
        node_id = scope.rstrip(":")
        raise ConversionError(
            f"node {node_id}: subgraphs nested over {_MAX_DEPTH} deep (one contains itself?)", node_id=node_id
        )
    for link_id, link in _links(level.get("links") or (), scope).items():
        into.links[(scope, link_id)] = link
        if link.target == _OUTPUT_NODE:
            into.into_outputs.setdefault((scope, link.target_slot), link)  # the first, should a save hold two
    for raw in level.get("nodes") or ():
        if not isinstance(raw, Mapping):
            continue
        node_id = f"{scope}{raw.get('id')}"
        live = raw.get("mode", 0) not in (MUTED, BYPASSED)
        subgraph = definitions.of(node_id, raw) if live else None
        into.nodes[node_id] = _Node(node_id, raw, scope, subgraph)
        if subgraph is not None:
            _expand(subgraph, f"{node_id}:", definitions, into, depth=depth + 1)


def _links(raw: Sequence[Any], scope: str) -> dict[Any, _Link]:
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
        found[link_id] = _Link(scope, str(origin), int(origin_slot or 0), str(target), int(target_slot or 0), str(kind))
    return found


def _is_connected(node: Mapping[str, Any]) -> bool:
    linked_in = any(isinstance(s, Mapping) and s.get("link") is not None for s in node.get("inputs") or ())
    linked_out = any(isinstance(s, Mapping) and s.get("links") for s in node.get("outputs") or ())
    return linked_in or linked_out


def _widget_values(node: Mapping[str, Any], definition: Mapping[str, Any]) -> dict[str, Any]:
    values = node.get("widgets_values")
    widgets = widget_inputs(definition)
    if isinstance(values, Mapping):  # some extensions save widget values by name
        return {name: values[name] for name, _ in widgets if name in values}
    if not isinstance(values, list):
        return {}
    lists = _list_widgets(definition)
    # A list widget with a control saves a filter after the control (the editor's control_filter_list); a save from
    # an editor without filters holds fewer values than that layout, and its filters are not looked for.
    laid_out = sum(1 + (0 if not control else 2 if name in lists else 1) for name, control in widgets)
    filtered = len(values) >= laid_out
    found: dict[str, Any] = {}
    index = 0
    for name, control in widgets:
        if index >= len(values):
            break
        found[name] = values[index]
        index += 1
        if control and index < len(values) and _is_control_value(values[index]):
            index += 1  # the "control after generate" choice: a UI setting, not an input
            if filtered and name in lists and index < len(values) and isinstance(values[index], str):
                index += 1  # and a list's filter for that choice
    return found


def _list_widgets(definition: Mapping[str, Any]) -> set[str]:
    """The names of a node type's list (choice) inputs."""
    sections = definition.get("input") or {}
    return {
        name
        for section in ("required", "optional")
        for name, spec in (sections.get(section) or {}).items()
        if isinstance(spec, list | tuple) and spec and is_list_kind(spec[0])
    }


def _is_control_value(value: Any) -> bool:
    return value in ("fixed", "increment", "decrement", "randomize")


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


_DROPPED = _Sentinel("dropped")  # the input gets nothing (linked to a muted node, or to nothing)
_KEPT = _Sentinel("kept")  # the input keeps the node's own widget value


def _resolve(link: _Link | None, workflow: _Workflow, node_id: str, name: str) -> Any:
    """The value an input linked by `link` receives: `[origin, slot]`, a primitive's or a subgraph instance's
    widget value, _KEPT or _DROPPED."""
    for _ in range(_MAX_HOPS):
        if link is None:
            return _DROPPED
        if link.origin == _INPUT_NODE:  # out of the subgraph, onto the instance's input
            instance = workflow.nodes[link.scope[:-1]]
            link, value = _instance_input(instance, link.origin_slot, workflow)
            if link is None:
                return value
            continue
        origin = workflow.nodes.get(link.scope + link.origin)
        if origin is None:
            raise ConversionError(
                f"node {node_id} input {name}: linked to missing node {link.scope}{link.origin}", node_id=node_id
            )
        kind, mode = origin.raw.get("type"), origin.raw.get("mode", 0)
        if mode == MUTED:
            return _DROPPED
        if origin.subgraph is not None:  # into the subgraph, to what feeds its output node's slot
            link = _instance_output(origin, link.origin_slot, workflow)
        elif kind == "Reroute":
            slots = origin.raw.get("inputs") or ()
            link = workflow.input_link(origin, slots[0]) if slots and isinstance(slots[0], Mapping) else None
        elif kind == "PrimitiveNode":
            values = origin.raw.get("widgets_values")
            if not isinstance(values, list) or not values:
                raise ConversionError(f"node {origin.id} (PrimitiveNode) holds no value", node_id=origin.id)
            return values[0]
        elif mode == BYPASSED:
            link = _pass_through(origin, link, workflow)
        else:
            return [origin.id, link.origin_slot]
    raise ConversionError(f"node {node_id} input {name}: its links form a loop", node_id=node_id)


def _instance_input(instance: _Node, index: int, workflow: _Workflow) -> tuple[_Link | None, Any]:
    """What a subgraph instance gives its subgraph's input `index`: the link feeding the instance's input of that
    name, or (no link) the instance's widget value for it, else _KEPT (the inner node's own value)."""
    assert instance.subgraph is not None
    inputs = [item for item in instance.subgraph.get("inputs") or () if isinstance(item, Mapping)]
    if index >= len(inputs):
        return None, _DROPPED
    name = inputs[index].get("name")
    for slot in instance.raw.get("inputs") or ():
        if isinstance(slot, Mapping) and slot.get("name") == name and slot.get("link") is not None:
            return workflow.input_link(instance, slot), None
    values = instance.raw.get("widgets_values")
    if isinstance(values, Mapping):
        return None, values.get(name, _KEPT)
    widgets = [item.get("name") for item in inputs if _feeds_a_widget(item, instance, workflow)]
    if isinstance(values, list) and name in widgets and widgets.index(name) < len(values):
        return None, values[widgets.index(name)]
    return None, _KEPT


def _feeds_a_widget(subgraph_input: Mapping[str, Any], instance: _Node, workflow: _Workflow) -> bool:
    """Whether a subgraph input is linked to a widget inside (the editor gives the instance a widget for it)."""
    scope = f"{instance.id}:"
    for link_id in subgraph_input.get("linkIds") or ():
        link = workflow.links.get((scope, link_id))
        target = workflow.nodes.get(scope + link.target) if link is not None else None
        slots = target.raw.get("inputs") or () if target is not None else ()
        if link is not None and link.target_slot < len(slots):
            slot = slots[link.target_slot]
            if isinstance(slot, Mapping) and slot.get("widget"):
                return True
    return False


def _instance_output(instance: _Node, index: int, workflow: _Workflow) -> _Link | None:
    """The link inside a subgraph instance that feeds its output node's slot `index`."""
    return workflow.into_outputs.get((f"{instance.id}:", index))


def _pass_through(node: _Node, link: _Link, workflow: _Workflow) -> _Link | None:
    """A bypassed node hands its output slot the input of the same type (the same index first, as the editor)."""
    outputs = node.raw.get("outputs") or ()
    wanted = link.type or (outputs[link.origin_slot].get("type") if link.origin_slot < len(outputs) else "")
    slots = list(node.raw.get("inputs") or ())
    order = [link.origin_slot, *range(len(slots))] if link.origin_slot < len(slots) else list(range(len(slots)))
    for index in order:
        slot = slots[index]
        if isinstance(slot, Mapping) and slot.get("type") == wanted and slot.get("link") is not None:
            return workflow.input_link(node, slot)
    return None
