"""Group nodes, the older editor's reusable node groups (a node of type `workflow>NAME` or `workflow/NAME`, its inner
nodes in the workflow's `extra.groupNodes[NAME]`), rewritten as the subgraph `ui_format` expands, so that they run
with the ids the editor gave them (`<instance>:<index of the inner node>`).

The editor lays a group node out from its inner nodes' definitions, in the inner nodes' order:
- each inner widget becomes one of the group's widgets (a seed's "control after generate" value follows it, as on
  any node), and each other inner input that no inner link feeds becomes one of the group's inputs;
- an inner widget converted to an input is fed by its inner link, or, unlinked, becomes a group widget that starts
  as an input; these come after every other widget and input, in the inner nodes' order;
- a primitive node inside gives the group a widget for its value (with a "control after generate" value after an
  INT, and that and a filter after a list) and feeds the widgets it is linked to; a reroute inside passes its link
  on, and is one of the group's inputs (outputs) when nothing inside feeds it (it feeds something outside);
- an inner output becomes one of the group's outputs unless it only feeds other inner nodes;
- the group's `config` may rename an inner input, hide one (nothing feeds it then) or show or hide an output;
- inner nodes keep their mode: a muted one is left out, a bypassed one wired through, as anywhere else.
The instance's `widgets_values` follow the widgets' order; its inputs follow the inputs' order, except the widgets
converted to inputs, which are found by the widget's name (the editor's: the config's name, else the input's label
or name, a repeated one prefixed with the inner node's title or type). A group whose saved values do not add up to
that layout is refused, naming the node and why, rather than guessed at.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

GROUP_PREFIXES = ("workflow>", "workflow/")
SUBGRAPH_INPUT, SUBGRAPH_OUTPUT = -10, -20  # the ids of a subgraph's input and output nodes, as the editor saves them
WidgetInputs = Callable[[Mapping[str, Any]], list[tuple[str, bool]]]


class GroupRefused(ValueError):
    """A group node this conversion does not take; the message says what it uses."""


def group_name(kind: str) -> str | None:
    """NAME for a `workflow>NAME` (or `workflow/NAME`) node type, else None."""
    for prefix in GROUP_PREFIXES:
        if kind.startswith(prefix):
            return kind[len(prefix) :]
    return None


@dataclass(frozen=True)
class _GroupLinks:
    """The group's inner links as the editor saves them: `[origin, slot, target, slot, _, type]`."""

    to: dict[tuple[int, int], tuple[int, int, str]]  # (target, slot) -> (origin, slot, type)
    from_: dict[tuple[int, int], list[tuple[int, int, str]]]  # (origin, slot) -> [(target, slot, type)]
    external: dict[tuple[int, int], str]  # outputs that feed something outside the group -> their type

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> _GroupLinks:
        to: dict[tuple[int, int], tuple[int, int, str]] = {}
        from_: dict[tuple[int, int], list[tuple[int, int, str]]] = {}
        for origin, origin_slot, target, target_slot, kind in _ends(data.get("links"), size=4):
            to[(target, target_slot)] = (origin, origin_slot, kind)
            from_.setdefault((origin, origin_slot), []).append((target, target_slot, kind))
        external = {(origin, slot): kind for origin, slot, kind in _ends(data.get("external"), size=2)}
        return cls(to, from_, external)

    def internal_only(self, node: int, slot: int) -> bool:
        return (node, slot) in self.from_ and (node, slot) not in self.external


@dataclass
class _Widget:
    """One of the group's widgets: the inner input it sets, its name on the group and how many values it saves."""

    node: int
    input_name: str
    name: str
    saved_values: int


@dataclass
class _Layout:
    """The subgraph being built, and the group's widgets and inputs in the editor's order."""

    nodes: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # the group's (non-widget) inputs
    outputs: list[dict[str, Any]] = field(default_factory=list)
    widgets: list[_Widget] = field(default_factory=list)
    widget_slots: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # inner node -> its widget slots
    seen_names: dict[str, int] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)  # the group's renamed and hidden slots, by inner index
    link_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def link(self, origin: int, origin_slot: int, target: int, target_slot: int) -> int:
        link_id = next(self.link_ids)
        self.links.append(
            {
                "id": link_id,
                "origin_id": origin,
                "origin_slot": origin_slot,
                "target_id": target,
                "target_slot": target_slot,
                "type": "",
            }
        )
        return link_id

    def slot_link(self, links: _GroupLinks, node: int, slot: int) -> int | None:
        """The inner link into (node, slot) when there is one; else None (the slot is the group's to fill)."""
        source = links.to.get((node, slot))
        return self.link(source[0], source[1], node, slot) if source is not None else None

    def group_input(self, node: int, slot: int) -> int:
        link_id = self.link(SUBGRAPH_INPUT, len(self.inputs), node, slot)
        self.inputs.append({"name": None, "linkIds": [link_id]})
        return link_id

    def group_output(self, node: int, slot: int, kind: Any) -> None:
        self.link(node, slot, SUBGRAPH_OUTPUT, len(self.outputs))
        self.outputs.append({"name": f"output {len(self.outputs)}", "type": kind})

    def custom(self, index: int, side: str, key: str | int) -> Mapping[str, Any]:
        """What the group's config says of an inner node's input (by name) or output (by slot): `name`,
        `visible`."""
        node = self.config.get(str(index))
        found = node.get(side) if isinstance(node, Mapping) else None
        entry = found.get(str(key)) if isinstance(found, Mapping) else None
        return entry if isinstance(entry, Mapping) else {}

    def open_input(self, index: int, inner: Mapping[str, Any], kind: str, input_name: str, slot: int) -> int | None:
        """An inner input nothing inside feeds: it takes its name, as the editor does, and becomes one of the group's
        inputs (its link id) unless the config hides it (None: nothing feeds it)."""
        self.name_for(index, inner, kind, input_name)
        if self.custom(index, "input", input_name).get("visible") is False:
            return None
        return self.group_input(index, slot)

    def name_for(self, index: int, inner: Mapping[str, Any], kind: str, input_name: str) -> str:
        """The editor's name on the group for an inner input: the name the group gives it, else its label or name,
        prefixed with the inner node's title (or type) when the name is taken (or the node is a titled primitive)."""
        label = self.custom(index, "input", input_name).get("name") or next(
            (slot.get("label") for slot in _slots(inner) if slot.get("name") == input_name and slot.get("label")),
            None,
        )
        name = key = str(label or input_name)
        if (kind == "PrimitiveNode" and inner.get("title")) or name in self.seen_names:
            prefix = f"{inner.get('title') or kind} "
            name = key = f"{prefix}{input_name}"
            if name in self.seen_names:
                name = f"{prefix}{self.seen_names[name]} {input_name}"
        self.seen_names[key] = self.seen_names.get(key, 1) + 1
        return name


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
    values = instance.get("widgets_values") or []
    if not isinstance(values, list):
        raise GroupRefused("it saves its widget values by name")
    links = _GroupLinks.of(data)
    inner_nodes = [inner if isinstance(inner, Mapping) else {} for inner in data["nodes"]]
    config = data.get("config")
    layout = _Layout(config=config if isinstance(config, Mapping) else {})
    converted_later: list[Callable[[], None]] = []
    for index, inner in enumerate(inner_nodes):
        inner_kind = str(inner.get("type", ""))
        if inner_kind == "Reroute":
            _add_reroute(layout, links, index, inner)
            continue
        definition = _definition(index, inner_kind, inner_nodes, links, object_info)
        if definition is None:
            continue
        converted_later.append(_add_node(layout, links, index, inner, inner_kind, definition, widget_inputs))
    for add_converted in converted_later:  # the editor adds these once every inner node is laid out
        add_converted()
    _take_values(layout, values)
    _check_outputs(instance, layout)
    subgraph_inputs = _connect_instance_inputs(instance, layout)
    return {"id": kind, "name": name, "inputs": subgraph_inputs, "outputs": layout.outputs, "nodes": layout.nodes,
            "links": layout.links}  # fmt: skip


def _definition(
    index: int, kind: str, inner_nodes: list[Mapping[str, Any]], links: _GroupLinks, object_info: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    """The definition the editor lays an inner node out by; None for one it leaves out (a note, an unlinked
    primitive)."""
    if kind == "PrimitiveNode":
        targets = links.from_.get((index, 0))
        if not targets:
            return None
        target, target_slot, value_kind = targets[0]
        spec: Any = value_kind
        if value_kind in ("COMBO", "", "*"):  # a list's choices (or an unsaved type) come from the widget it feeds
            spec = _target_widget_spec(target, target_slot, inner_nodes, object_info)
        return {"input": {"required": {"value": [spec, {"control_after_generate": True}]}}, "output": [value_kind]}
    definition = object_info.get(kind)
    if isinstance(definition, Mapping):
        return definition
    if any(index in (origin, target) for (target, _), (origin, _, _) in links.to.items()):
        raise GroupRefused(f"it holds a node type ComfyUI does not know: {kind!r} (inner node {index})")
    return None  # a note or another node with no part in the graph: the editor leaves it out too


def _target_widget_spec(
    target: int, target_slot: int, inner_nodes: list[Mapping[str, Any]], object_info: Mapping[str, Any]
) -> Any:
    inner = inner_nodes[target] if 0 <= target < len(inner_nodes) else {}
    slots = _slots(inner)
    widget = slots[target_slot].get("widget") if target_slot < len(slots) else None
    definition = object_info.get(str(inner.get("type", "")))
    sections = definition.get("input") or {} if isinstance(definition, Mapping) else {}
    widget_name = widget.get("name") if isinstance(widget, Mapping) else None
    for section in ("required", "optional"):
        spec = (sections.get(section) or {}).get(widget_name)
        if isinstance(spec, list | tuple) and spec:
            return spec[0]
    raise GroupRefused(f"its primitive feeds a list input of inner node {target} that cannot be found")


def _add_reroute(layout: _Layout, links: _GroupLinks, index: int, inner: Mapping[str, Any]) -> None:
    """A reroute passes its link on; fed from outside it is a group input (it takes its type as its name, so a later
    input of that name is prefixed), feeding outside a group output."""
    link_id = layout.slot_link(links, index, 0)
    if link_id is None:
        targets = links.from_.get((index, 0))
        kind = (targets[0][2] if targets else links.external.get((index, 0))) or "*"
        link_id = layout.open_input(index, inner, "Reroute", kind, 0)
    layout.nodes.append({"id": index, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "link": link_id}]})
    if not links.internal_only(index, 0):
        layout.group_output(index, 0, links.external.get((index, 0), "*"))


def _add_node(
    layout: _Layout,
    links: _GroupLinks,
    index: int,
    inner: Mapping[str, Any],
    kind: str,
    definition: Mapping[str, Any],
    widget_inputs: WidgetInputs,
) -> Callable[[], None]:
    """Lay out an inner node's widgets, inputs and outputs; returns what lays out its widgets converted to inputs,
    which the editor does after every inner node."""
    sections = definition.get("input") or {}
    specs = {name: spec for section in ("required", "optional") for name, spec in (sections.get(section) or {}).items()}
    widgets = widget_inputs(definition)
    widget_names = {widget for widget, _ in widgets}
    converted = [
        str(slot.get("name"))
        for slot in _slots(inner)
        if slot.get("name") in widget_names and (slot.get("widget") or {}).get("name") == slot.get("name")
    ]
    for widget, control in widgets:
        if widget not in converted:
            saved = _saved_values(kind, specs.get(widget), control)
            layout.widgets.append(_Widget(index, widget, layout.name_for(index, inner, kind, widget), saved))
    slots: list[dict[str, Any]] = []
    slot_names = [input_name for input_name in specs if input_name not in widget_names]
    for slot_index, input_name in enumerate(slot_names):
        link_id = layout.slot_link(links, index, slot_index)
        if link_id is None:
            link_id = layout.open_input(index, inner, kind, input_name, slot_index)
        slots.append({"name": input_name, "type": _kind_of(specs[input_name]), "link": link_id})
    outputs = list(definition.get("output") or ())
    for output_slot, output_kind in enumerate(outputs):
        visible = layout.custom(index, "output", output_slot).get("visible")
        if visible is True or (visible is None and not links.internal_only(index, output_slot)):
            layout.group_output(index, output_slot, output_kind)
    node: dict[str, Any] = {"id": index, "type": kind, "mode": inner.get("mode", 0), "inputs": slots}
    node["outputs"] = [{"type": output_kind} for output_kind in outputs]  # a bypassed node is wired by these types
    if inner.get("title"):
        node["title"] = inner["title"]
    layout.nodes.append(node)
    layout.widget_slots[index] = slots

    def add_converted() -> None:
        for rank, widget in enumerate(converted):
            slot_index = len(slot_names) + rank
            link_id = layout.slot_link(links, index, slot_index)
            if link_id is not None:
                slots.append({"name": widget, "widget": {"name": widget}, "link": link_id})
                continue
            control = any(name == widget and has_control for name, has_control in widgets)
            saved = _saved_values(kind, specs.get(widget), control)
            layout.widgets.append(_Widget(index, widget, layout.name_for(index, inner, kind, widget), saved))

    return add_converted


def is_list_kind(kind: Any) -> bool:
    """Whether an input's kind (the first item of its spec) is a list of choices."""
    return isinstance(kind, list) or kind == "COMBO"


def _kind_of(spec: Any) -> Any:
    return spec[0] if isinstance(spec, list | tuple) and spec else None


def _saved_values(kind: str, spec: Any, control: bool) -> int:
    """How many values a group widget saves: its own, then a "control after generate" choice after an INT given one
    (`control`, as `widget_inputs` tells it: a seed always), and that and a filter after a list given one (the
    editor's control widgets)."""
    value_kind = _kind_of(spec)
    is_list = is_list_kind(value_kind)
    if kind == "PrimitiveNode":
        return 3 if is_list else 2 if value_kind == "INT" else 1
    if not control:
        return 1
    return 3 if is_list else 2


def _take_values(layout: _Layout, values: list[Any]) -> None:
    """Give each inner node the values the instance saved for its widgets (by name, so a widget fed by an inner
    link keeps out of the way)."""
    taken: dict[int, dict[str, Any]] = {}
    used = 0
    for widget in layout.widgets:
        if used < len(values):
            taken.setdefault(widget.node, {})[widget.input_name] = values[used]
        used += widget.saved_values
    if used != len(values):
        raise GroupRefused(f"it saves {len(values)} widget values where its inner nodes' widgets take {used}")
    for node in layout.nodes:
        kind, index = node["type"], node["id"]
        if kind == "PrimitiveNode":
            node["widgets_values"] = [taken.get(index, {}).get("value")]
        elif kind != "Reroute":
            node["widgets_values"] = taken.get(index, {})


def _check_outputs(instance: Mapping[str, Any], layout: _Layout) -> None:
    for index, output in enumerate(instance.get("outputs") or ()):
        # A newer ComfyUI may give an inner node outputs it lacked when the group was saved (0.33: SaveImage's
        # pass-through): only an output something is linked to has to line up.
        if isinstance(output, Mapping) and output.get("links"):
            kind_there = layout.outputs[index]["type"] if index < len(layout.outputs) else None
            mismatched = output.get("type") not in (None, "*", kind_there) and kind_there != "*"
            if kind_there is None or mismatched:
                raise GroupRefused(
                    f"it has an output {index} ({output.get('type')}) its inner nodes do not account for"
                )


def _connect_instance_inputs(instance: Mapping[str, Any], layout: _Layout) -> list[dict[str, Any]]:
    """The subgraph's inputs: the group's inputs named as the instance names them (in order), then one for each of
    the instance's widgets converted to an input that a link feeds."""
    slots_in = [slot for slot in instance.get("inputs") or () if isinstance(slot, Mapping)]
    plain = [slot for slot in slots_in if not slot.get("widget")]
    if len(plain) != len(layout.inputs):
        raise GroupRefused(f"it has {len(plain)} inputs where its inner nodes leave {len(layout.inputs)} unlinked")
    for item, slot in zip(layout.inputs, plain, strict=True):
        item["name"] = slot.get("name")  # the instance's own name for it: how the expansion finds its link
    found = list(layout.inputs)
    widgets = {widget.name: widget for widget in layout.widgets}
    for slot in slots_in:
        widget_name = (slot.get("widget") or {}).get("name")
        if not widget_name or slot.get("link") is None:
            continue  # unlinked: the widget's saved value stands
        widget = widgets.get(str(widget_name))
        if widget is None:
            raise GroupRefused(f"its input {slot.get('name')!r} is a widget its inner nodes do not have")
        link_id = layout.link(SUBGRAPH_INPUT, len(found), widget.node, len(layout.widget_slots[widget.node]))
        layout.widget_slots[widget.node].append(
            {"name": widget.input_name, "widget": {"name": widget.input_name}, "link": link_id}
        )
        found.append({"name": slot.get("name"), "linkIds": [link_id]})
    return found


def _slots(inner: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [slot for slot in inner.get("inputs") or () if isinstance(slot, Mapping)]


def _ends(items: Any, *, size: int) -> list[tuple[Any, ...]]:
    """The first `size` numbers of each link as the group saves them (`[origin, slot, target, slot, _, type]`; its
    `external` outputs: `[node, slot, type]`), with the type last; GroupRefused when they are not numbers."""
    found: list[tuple[Any, ...]] = []
    for item in items or ():
        if not isinstance(item, list | tuple) or len(item) < size or item[0] is None:
            continue
        try:
            numbers = tuple(int(part) for part in item[:size])
        except (TypeError, ValueError):
            raise GroupRefused(f"it saves a malformed link {list(item)!r}") from None
        type_at = 5 if size == 4 else 2
        found.append((*numbers, str(item[type_at]) if len(item) > type_at else ""))
    return found
