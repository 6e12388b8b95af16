"""What a simulated node is: its object_info description, its execute function and its hooks.

Owns the node description types and their rendering to ComfyUI's object_info shape (V1 and V3 flavours).
Must not know about the queue, the server or websockets; nodes reach the outside only through NodeContext.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from comfyui_api.simulator.config import SimulatorConfig
    from comfyui_api.simulator.paths import Folders

# The wildcard type: a link of any type may feed it (ComfyUI's AnyType compares equal to everything).
ANY_TYPE = "*"

ComboSource = Callable[["Folders"], list[str]]
NodeFunction = Callable[..., Any]


class ProgressReporter(Protocol):
    """What a running node may report: step progress, optionally with a preview image."""

    def update(self, value: int, total: int, preview: tuple[str, Any, int | None] | None = None) -> None: ...


class InterruptProcessingError(Exception):
    """Raised inside a node when an interrupt was requested; stops the prompt like ComfyUI's."""


@dataclass
class NodeContext:
    """Everything a node may touch while it runs: folders, settings, progress and its per-node state."""

    node_id: str
    folders: Folders
    config: SimulatorConfig
    progress: ProgressReporter
    state: dict[str, Any]
    interrupted: Callable[[], bool]

    def check_interrupt(self) -> None:
        if self.interrupted():
            raise InterruptProcessingError("Processing interrupted")


@dataclass(frozen=True)
class InputSpec:
    """One input: a type name, a fixed list of options (V1 combo) or a source of options, plus its options."""

    kind: str | tuple[Any, ...] | ComboSource
    options: Mapping[str, Any] | None = None

    def resolved_type(self, folders: Folders) -> str | list[Any]:
        if callable(self.kind):
            return self.kind(folders)
        if isinstance(self.kind, tuple):
            return list(self.kind)
        return self.kind

    def as_wire(self, folders: Folders) -> list[Any]:
        first = self.resolved_type(folders)
        return [first] if self.options is None else [first, dict(self.options)]


def comfy_qualname(qualname: str) -> Callable[[NodeFunction], NodeFunction]:
    """Name a hook as ComfyUI's method is named (`LoadImage.VALIDATE_INPUTS`): Python puts that name into the
    TypeError a bad call raises, and ComfyUI reports that message to clients."""

    def rename(function: NodeFunction) -> NodeFunction:
        function.__qualname__ = qualname
        return function

    return rename


def inp(kind: str | tuple[Any, ...] | ComboSource, options: Mapping[str, Any] | None = None) -> InputSpec:
    return InputSpec(kind, options)


@dataclass(frozen=True)
class NodeSpec:
    """A node class as the simulator knows it; `info()` renders its object_info entry."""

    name: str
    category: str
    python_module: str
    execute: NodeFunction
    required: Mapping[str, InputSpec] = field(default_factory=dict)
    optional: Mapping[str, InputSpec] = field(default_factory=dict)
    hidden: Mapping[str, str] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    output_names: tuple[str, ...] | None = None
    output_tooltips: tuple[str | None, ...] | None = None
    output_node: bool = False
    display_name: str | None = None
    description: str = ""
    v3: bool = False
    experimental: bool = False
    validate: NodeFunction | None = None
    is_changed: NodeFunction | None = None
    # ComfyUI >= 0.33 object_info: is_input_list, has_intermediate_output, search_aliases (essentials_category)
    modern: bool = False
    search_aliases: tuple[str, ...] = ()
    essentials_category: str | None = None

    def input_types(self, folders: Folders) -> dict[str, dict[str, Any]]:
        """The INPUT_TYPES() view used by validation: category -> name -> (type, options)."""
        out: dict[str, dict[str, Any]] = {"required": {}}
        for name, spec in self.required.items():
            out["required"][name] = (spec.resolved_type(folders), dict(spec.options or {}))
        if self.optional:
            out["optional"] = {n: (s.resolved_type(folders), dict(s.options or {})) for n, s in self.optional.items()}
        if self.hidden:
            out["hidden"] = {n: (kind, {}) for n, kind in self.hidden.items()}
        return out

    def info(self, folders: Folders) -> dict[str, Any]:
        """The object_info entry, key for key in ComfyUI's order."""
        inputs: dict[str, Any] = {"required": {n: s.as_wire(folders) for n, s in self.required.items()}}
        if self.optional:
            inputs["optional"] = {n: s.as_wire(folders) for n, s in self.optional.items()}
        if self.hidden:
            # V3 nodes describe hidden inputs as one-element lists, V1 nodes as bare strings.
            inputs["hidden"] = {n: ([k] if self.v3 else k) for n, k in self.hidden.items()}
        names = list(self.output_names) if self.output_names is not None else list(self.outputs)
        entry: dict[str, Any] = {"input": inputs, "input_order": {key: list(value) for key, value in inputs.items()}}
        if self.modern:
            entry["is_input_list"] = False
        entry.update({
            "output": list(self.outputs),
            "output_is_list": [False] * len(self.outputs),
            "output_name": names,
        })  # fmt: skip
        if self.v3:
            entry["output_tooltips"] = list(self.output_tooltips or [None] * len(self.outputs))
        entry.update(
            name=self.name,
            display_name=self.display_name if (self.v3 or self.display_name is not None) else self.name,
            description=self.description,
            python_module=self.python_module,
            category=self.category,
            output_node=self.output_node,
        )
        if self.modern:
            entry.update(has_intermediate_output=False, search_aliases=list(self.search_aliases))
            if self.essentials_category is not None:
                entry["essentials_category"] = self.essentials_category
        if self.v3:
            entry.update(deprecated=False, experimental=self.experimental, api_node=False)
        elif self.output_tooltips is not None:
            entry["output_tooltips"] = list(self.output_tooltips)
        return entry

    def is_output(self) -> bool:
        return self.output_node

    def hidden_kinds(self) -> dict[str, str]:
        return dict(self.hidden)
