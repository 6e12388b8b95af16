"""Turns an author's input declaration into a typed WorkflowInput, checked against the graph and /object_info.

Type, choices, bounds, default and description come from the declaration first, then from what ComfyUI says about
the target input, then from the graph's current value. Raises DefinitionError; reads its arguments only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from msgspec import UNSET, UnsetType

from comfyui_api.comfy.graph import media_inputs
from comfyui_api.workflows.declarations import DefinitionError, InputDeclaration
from comfyui_api.workflows.nodes import NodeInputInfo, input_names, knows_class, node_input_info
from comfyui_api.workflows.workflow import InputKind, Target, WorkflowInput, is_link

_KIND_OF_TYPE = {
    "INT": InputKind.INTEGER,
    "FLOAT": InputKind.NUMBER,
    "STRING": InputKind.STRING,
    "BOOLEAN": InputKind.BOOLEAN,
}
_MEDIA_KINDS = {"image": InputKind.IMAGE, "audio": InputKind.AUDIO, "video": InputKind.VIDEO}
CHECKPOINT_FIELD = "ckpt_name"


@dataclass(frozen=True)
class _Facts:
    """What is known about one target: the node's class, ComfyUI's spec of the input, the graph's current value."""

    target: Target
    class_type: str
    info: NodeInputInfo | None
    value: Any | UnsetType
    kind: InputKind | None

    def describe(self) -> str:
        return f"{self.target} ({self.class_type} input '{self.target.field}')"


def resolve_input(
    declaration: InputDeclaration,
    graph: Mapping[str, Any],
    object_info: Mapping[str, Any] | None,
    *,
    default_checkpoint: str | None = None,
) -> WorkflowInput:
    facts = [_facts(target, graph, object_info) for target in declaration.targets]
    kind = _kind(declaration, facts)
    minimum, maximum = _bounds(declaration, kind, facts)
    draft = WorkflowInput(
        name=declaration.name,
        kind=kind,
        targets=declaration.targets,
        minimum=minimum,
        maximum=maximum,
        options=_options(declaration, kind, facts),
        description=declaration.description or next((f.info.tooltip for f in facts if f.info), None),
        randomize=declaration.randomize,
    )
    if kind.is_media:
        _check_staged(facts, kind)
    default = _default(declaration, draft, facts, default_checkpoint)
    required = declaration.required if declaration.required is not None else default is UNSET and not draft.randomize
    if required and declaration.default is not UNSET:
        raise DefinitionError("a required input cannot have a default")
    example = declaration.example
    if example is not UNSET:
        example = _checked(draft, example, "example")
    return replace(draft, default=UNSET if required else default, required=required, example=example)


def _facts(target: Target, graph: Mapping[str, Any], object_info: Mapping[str, Any] | None) -> _Facts:
    node = graph.get(target.node_id)
    if not isinstance(node, Mapping):
        raise DefinitionError(f"target {target}: the graph has no node {target.node_id!r}")
    class_type = str(node.get("class_type"))
    inputs = node.get("inputs")
    value = inputs.get(target.field, UNSET) if isinstance(inputs, Mapping) else UNSET
    if is_link(value):
        raise DefinitionError(
            f"target {target}: that input is connected to node {value[0]!r}; only literal inputs can be set"
        )
    info = None
    if object_info is not None and knows_class(object_info, class_type):
        info = node_input_info(object_info, class_type, target.field)
        if info is None:
            known = ", ".join(input_names(object_info, class_type)) or "none"
            raise DefinitionError(f"target {target}: {class_type} has no input {target.field!r} (it has: {known})")
    elif value is UNSET:
        raise DefinitionError(f"target {target}: node {target.node_id} ({class_type}) has no input {target.field!r}")
    facts = _Facts(target, class_type, info, value, None)
    return replace(facts, kind=_inferred_kind(facts))


def _inferred_kind(facts: _Facts) -> InputKind | None:
    info = facts.info
    if info is not None and info.comfy_type == "COMBO":
        return _MEDIA_KINDS[info.upload] if info.upload else InputKind.ENUM
    if info is not None and info.comfy_type in _KIND_OF_TYPE:
        return _KIND_OF_TYPE[info.comfy_type]
    if info is not None and info.comfy_type != "*" and facts.value is UNSET:
        raise DefinitionError(f"target {facts.target}: {facts.class_type} takes a {info.comfy_type} link there")
    value = facts.value
    if isinstance(value, bool):
        return InputKind.BOOLEAN
    if isinstance(value, int):
        return InputKind.INTEGER
    if isinstance(value, float):
        return InputKind.NUMBER
    if isinstance(value, str):
        return InputKind.STRING
    return None


def _kind(declaration: InputDeclaration, facts: list[_Facts]) -> InputKind:
    declared = declaration.kind
    if declared is None:
        kinds = {f.kind for f in facts}
        unknown = next((f for f in facts if f.kind is None), None)
        if unknown is not None:
            raise DefinitionError(f"cannot tell the type of {unknown.describe()}; declare `type`")
        if len(kinds) > 1:
            shown = ", ".join(f"{f.target} is {f.kind}" for f in facts)
            raise DefinitionError(f"targets take different types ({shown}); declare `type`")
        kind = facts[0].kind
        assert kind is not None
        return kind
    for fact in facts:
        if fact.kind is not None and not _compatible(declared, fact.kind):
            raise DefinitionError(f"type {declared} does not fit {fact.describe()}, which takes {fact.kind}")
    if declared is InputKind.STRING and any(f.kind is InputKind.ENUM for f in facts):
        return InputKind.ENUM  # ComfyUI only accepts the combo's choices, so say so in the schema too
    return declared


def _compatible(declared: InputKind, inferred: InputKind) -> bool:
    if declared is inferred:
        return True
    if declared is InputKind.INTEGER:
        return inferred is InputKind.NUMBER
    if declared in (InputKind.STRING, InputKind.ENUM):
        return inferred in (InputKind.STRING, InputKind.ENUM) or inferred.is_media
    if declared.is_media:
        return inferred in (InputKind.STRING, InputKind.ENUM)
    return False


def _check_staged(facts: list[_Facts], kind: InputKind) -> None:
    """Media values are URLs or base64 until staging turns them into files; it must know the target input."""
    for fact in facts:
        probe = {fact.target.node_id: {"class_type": fact.class_type, "inputs": {fact.target.field: "https://x/y"}}}
        if not media_inputs(probe):
            raise DefinitionError(
                f"type {kind} needs an input that media staging knows (such as LoadImage's image); "
                f"{fact.describe()} is not one"
            )


def _options(declaration: InputDeclaration, kind: InputKind, facts: list[_Facts]) -> tuple[Any, ...]:
    offered = _offered(facts) if kind is InputKind.ENUM else None
    if declaration.enum is None:
        if kind is not InputKind.ENUM:
            return ()
        if offered is None:
            raise DefinitionError("type enum needs an `enum` list of choices")
        if not offered:
            where = ", ".join(f.describe() for f in facts)
            raise DefinitionError(f"ComfyUI offers no choices for {where} (is the model or file installed?)")
        return offered
    if kind is InputKind.BOOLEAN or kind.is_media:
        raise DefinitionError(f"`enum` does not apply to type {kind}")
    if not declaration.enum:
        raise DefinitionError("`enum` is empty")
    unchecked = replace(_placeholder(kind), options=())
    for choice in declaration.enum:
        _checked(unchecked, choice, "enum")
        if offered is not None and choice not in offered:
            raise DefinitionError(f"enum choice {choice!r} is not offered by ComfyUI for {facts[0].describe()}")
    return declaration.enum


def _offered(facts: list[_Facts]) -> tuple[Any, ...] | None:
    """The combo choices every target accepts (in the first target's order), or None when none is a combo."""
    lists = [f.info.options for f in facts if f.info is not None and f.info.comfy_type == "COMBO"]
    if not lists:
        return None
    return tuple(choice for choice in lists[0] if all(choice in other for other in lists[1:]))


def _bounds(
    declaration: InputDeclaration, kind: InputKind, facts: list[_Facts]
) -> tuple[int | float | None, int | float | None]:
    if kind not in (InputKind.INTEGER, InputKind.NUMBER):
        if declaration.minimum is not None or declaration.maximum is not None:
            raise DefinitionError(f"`minimum`/`maximum` apply to integer and number inputs, not {kind}")
        return None, None
    lows = [f.info.minimum for f in facts if f.info is not None and f.info.minimum is not None]
    highs = [f.info.maximum for f in facts if f.info is not None and f.info.maximum is not None]
    node_low, node_high = (max(lows) if lows else None), (min(highs) if highs else None)
    low, high = declaration.minimum, declaration.maximum
    if low is not None and node_low is not None and low < node_low:
        raise DefinitionError(f"minimum {low} is below {node_low}, the least ComfyUI accepts for {facts[0].describe()}")
    if high is not None and node_high is not None and high > node_high:
        raise DefinitionError(
            f"maximum {high} is above {node_high}, the most ComfyUI accepts for {facts[0].describe()}"
        )
    low = low if low is not None else node_low
    high = high if high is not None else node_high
    if low is not None and high is not None and low > high:
        raise DefinitionError(f"minimum {low} is greater than maximum {high}")
    return low, high


def _default(
    declaration: InputDeclaration, draft: WorkflowInput, facts: list[_Facts], default_checkpoint: str | None
) -> Any:
    if declaration.randomize:
        if draft.kind is not InputKind.INTEGER:
            raise DefinitionError("`randomize` applies to integer inputs only")
        if declaration.default is not UNSET:
            raise DefinitionError("give either `default` or `randomize`, not both")
        return UNSET
    if declaration.default is not UNSET:
        return _checked(draft, declaration.default, "default")
    candidates: list[Any] = []
    if default_checkpoint and any(f.target.field == CHECKPOINT_FIELD for f in facts):
        candidates.append(default_checkpoint)
    candidates.append(facts[0].value)
    for candidate in candidates:
        if candidate is UNSET:
            continue
        try:
            return draft.check(candidate)
        except ValueError:
            continue  # e.g. a LoadImage file name is no URL: the caller must then give the input
    return UNSET


def _checked(spec: WorkflowInput, value: Any, what: str) -> Any:
    try:
        return spec.check(value)
    except ValueError as exc:
        raise DefinitionError(f"{what} {value!r} {exc}") from None


def _placeholder(kind: InputKind) -> WorkflowInput:
    return WorkflowInput(name="", kind=kind, targets=())
