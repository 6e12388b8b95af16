"""The execution cache: node outputs and UI results keyed by input signature, plus per-node state objects.

Owns ComfyUI's "classic" cache semantics: a node's key is its class, its IS_CHANGED value, its literal inputs
and the signatures of everything upstream; entries not used by the current prompt are dropped when the next
prompt starts. Must not run nodes.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from comfyui_api.simulator.graph import is_link

log = logging.getLogger("comfyui_api.simulator")


class Uncacheable:
    """A signature part equal to nothing (ComfyUI uses NaN): the node always runs again."""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return id(self)


def to_hashable(obj: Any) -> Any:
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    if isinstance(obj, Mapping):
        try:
            items = sorted(obj.items())
        except TypeError:
            return Uncacheable()
        return frozenset((to_hashable(k), to_hashable(v)) for k, v in items)
    if isinstance(obj, Sequence):
        return frozenset(zip(itertools.count(), [to_hashable(i) for i in obj], strict=False))
    return Uncacheable()


IsChanged = Callable[[str], Any]


class ExecutionCache:
    """Outputs, UI results and node state surviving from one prompt to the next."""

    def __init__(self) -> None:
        self._outputs: dict[Any, list[Any]] = {}
        self._ui: dict[Any, dict[str, Any]] = {}
        self._state: dict[tuple[str, str], dict[str, Any]] = {}
        self._keys: dict[str, Any] = {}

    def set_prompt(self, prompt: dict[str, Any], is_changed: IsChanged, unique_id_nodes: set[str]) -> None:
        """Key every node of the new prompt, then drop entries the new prompt does not use."""
        self._keys = {node_id: self._signature(prompt, node_id, is_changed, unique_id_nodes) for node_id in prompt}
        used = set(self._keys.values())
        self._outputs = {k: v for k, v in self._outputs.items() if k in used}
        self._ui = {k: v for k, v in self._ui.items() if k in used}
        state_keys = {(node_id, str(prompt[node_id].get("class_type"))) for node_id in prompt}
        self._state = {k: v for k, v in self._state.items() if k in state_keys}

    def node_ids(self) -> list[str]:
        return list(self._keys)

    def output(self, node_id: str) -> list[Any] | None:
        key = self._keys.get(node_id)
        return self._outputs.get(key) if key is not None else None

    def set_output(self, node_id: str, value: list[Any]) -> None:
        self._outputs[self._keys[node_id]] = value

    def ui(self, node_id: str) -> dict[str, Any] | None:
        key = self._keys.get(node_id)
        return self._ui.get(key) if key is not None else None

    def set_ui(self, node_id: str, value: dict[str, Any]) -> None:
        self._ui[self._keys[node_id]] = value

    def state(self, node_id: str, class_type: str) -> dict[str, Any]:
        return self._state.setdefault((node_id, class_type), {})

    def clear(self) -> None:
        self._outputs.clear()
        self._ui.clear()
        self._state.clear()

    def _signature(self, prompt: dict[str, Any], node_id: str, is_changed: IsChanged, unique_id_nodes: set[str]) -> Any:
        ancestors: list[str] = []
        order: dict[str, int] = {}
        self._ancestry(prompt, node_id, ancestors, order)
        parts = [self._immediate(prompt, node_id, order, is_changed, unique_id_nodes)]
        parts.extend(self._immediate(prompt, a, order, is_changed, unique_id_nodes) for a in ancestors)
        return to_hashable(parts)

    def _immediate(
        self,
        prompt: dict[str, Any],
        node_id: str,
        order: dict[str, int],
        is_changed: IsChanged,
        unique_id_nodes: set[str],
    ) -> list[Any]:
        node = prompt.get(node_id)
        if not isinstance(node, dict):
            return [Uncacheable()]
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            return [Uncacheable()]
        signature: list[Any] = [node.get("class_type"), is_changed(node_id)]
        if node_id in unique_id_nodes:
            signature.append(node_id)
        for key in sorted(inputs):
            value = inputs[key]
            if is_link(value):
                signature.append((key, ("ANCESTOR", order[value[0]], value[1])))
            else:
                signature.append((key, value))
        return signature

    def _ancestry(self, prompt: dict[str, Any], node_id: str, ancestors: list[str], order: dict[str, int]) -> None:
        node = prompt.get(node_id)
        if not isinstance(node, dict):
            return
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            return
        for key in sorted(inputs):
            value = inputs[key]
            if is_link(value) and value[0] not in order:
                ancestors.append(value[0])
                order[value[0]] = len(ancestors) - 1
                self._ancestry(prompt, value[0], ancestors, order)
