"""Prompt validation with ComfyUI's rules and exact error bodies.

Owns walking the graph from its output nodes, coercing widget values in place (INT "64" -> 64), and building
`error` / `node_errors` as ComfyUI does, including its quirks (partial acceptance, errors of upstream nodes
reported on the node that raised, cycles failing without reasons). Must not execute nodes or touch the queue.
"""

from __future__ import annotations

import inspect
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from comfyui_api.simulator.config import SimulatorConfig
from comfyui_api.simulator.nodes.spec import ANY_TYPE, NodeContext, NodeSpec
from comfyui_api.simulator.paths import Folders

NodeResult = tuple[bool, list[dict[str, Any]], Any]


@dataclass
class Verdict:
    """validate_prompt's answer: accepted?, the top-level error, outputs to run, per-node errors."""

    ok: bool
    error: dict[str, Any] | None
    good_outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)


class _NoProgress:
    def update(self, value: int, total: int, preview: Any = None) -> None:
        return None


def type_name(klass: type) -> str:
    """ComfyUI's full_type_name: `KeyError`, `PIL.UnidentifiedImageError`."""
    module = klass.__module__
    return klass.__qualname__ if module == "builtins" else f"{module}.{klass.__qualname__}"


def types_match(received: Any, expected: Any) -> bool:
    """validate_node_input (non-strict): equal, wildcard, or overlapping comma-separated type lists."""
    if received == expected or ANY_TYPE in (received, expected):
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def _error(kind: str, message: str, details: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra}


def _input_info(class_inputs: dict[str, Any], name: str) -> tuple[Any, str | None, dict[str, Any]]:
    for category in ("required", "optional", "hidden"):
        if category in class_inputs and name in class_inputs[category]:
            entry = class_inputs[category][name]
            return entry[0], category, (entry[1] if len(entry) > 1 else {})
    return None, None, {}


def _coerce(input_type: Any, val: Any) -> Any:
    if input_type == "INT":
        return int(val)
    if input_type == "FLOAT":
        return float(val)
    if input_type == "STRING":
        return str(val)
    if input_type == "BOOLEAN":
        return bool(val)
    return val


class PromptValidator:
    """Validates API-format prompts against the node registry; one per simulator."""

    def __init__(self, registry: dict[str, NodeSpec], folders: Folders, config: SimulatorConfig) -> None:
        self._registry = registry
        self._folders = folders
        self._config = config

    def validate(self, prompt: Any, partial_targets: Any = None) -> Verdict:
        outputs: set[str] = set()
        for node_id in prompt:
            node = prompt[node_id]
            if "class_type" not in node:
                return Verdict(False, self._node_type_error(node_id, node, missing=True), [])
            spec = self._registry.get(node["class_type"])
            if spec is None:
                return Verdict(False, self._node_type_error(node_id, node, missing=False), [])
            if spec.output_node and (partial_targets is None or node_id in partial_targets):
                outputs.add(node_id)
        if not outputs:
            return Verdict(False, _error("prompt_no_outputs", "Prompt has no outputs", "", {}), [])
        if self._config.profile.cycle_node_errors and (cycles := _cycle_errors(prompt, outputs)):
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", "", {})
            return Verdict(False, error, [], cycles)
        return self._validate_outputs(prompt, outputs)

    def _node_type_error(self, node_id: str, node: Any, *, missing: bool) -> dict[str, Any]:
        """A node without a class_type, or of a class nobody registered."""
        details = f"Node ID '#{node_id}'"
        if not self._config.profile.missing_node_type_errors:
            if missing:
                return _error(
                    "invalid_prompt", "Cannot execute because a node is missing the class_type property.", details, {}
                )
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return _error("invalid_prompt", message, details, {})
        meta = node.get("_meta")
        title = meta.get("title") if isinstance(meta, dict) else None
        class_type = None if missing else node["class_type"]
        extra = {"node_id": node_id, "class_type": class_type, "node_title": title}
        if missing:
            name = title or f"ID #{node_id}"
            message = f"Node '{name}' has no class_type. The workflow may be corrupted or a custom node is missing."
        else:
            message = f"Node '{title or class_type}' not found. The custom node may not be installed."
        return _error("missing_node_type", message, details, extra)

    def _validate_outputs(self, prompt: Any, outputs: set[str]) -> Verdict:
        good: set[str] = set()
        failures: list[tuple[str, list[dict[str, Any]]]] = []
        node_errors: dict[str, Any] = {}
        validated: dict[Any, NodeResult] = {}
        for output_id in outputs:
            try:
                valid, reasons, _ = self._validate_node(prompt, output_id, validated, set())
            except Exception as ex:
                typ, _, tb = sys.exc_info()
                valid = False
                reasons = [
                    _error(
                        "exception_during_validation",
                        "Exception when validating node",
                        str(ex),
                        {"exception_type": type_name(typ or type(ex)), "traceback": traceback.format_tb(tb)},
                    )
                ]
                validated[output_id] = (False, reasons, output_id)
            if valid is True:
                good.add(output_id)
                continue
            failures.append((output_id, reasons))
            # Every node that failed so far with reasons lists this output as dependent (ComfyUI does the same,
            # even for nodes that failed while validating another output).
            for node_id, (ok, node_reasons, _) in validated.items():
                if ok is not True and node_reasons:
                    if node_id not in node_errors:
                        node_errors[node_id] = {
                            "errors": node_reasons,
                            "dependent_outputs": [],
                            "class_type": prompt[node_id]["class_type"],
                        }
                    node_errors[node_id]["dependent_outputs"].append(output_id)
        if not good:
            details = "\n".join(f"{e['message']}: {e['details']}" for _, errors in failures for e in errors)
            error = _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", details, {})
            return Verdict(False, error, [], node_errors)
        return Verdict(True, None, list(good), node_errors)

    def _validate_node(
        self, prompt: Any, unique_id: Any, validated: dict[Any, NodeResult], visiting: set[Any]
    ) -> NodeResult:
        if unique_id in validated:
            return validated[unique_id]
        if unique_id in visiting:
            # A cycle. ComfyUI recurses until RecursionError; every node on the loop ends up failed with only
            # its own errors, which is what returning "failed, no reasons" here produces.
            return (False, [], unique_id)
        inputs = prompt[unique_id]["inputs"]
        spec = self._registry[prompt[unique_id]["class_type"]]
        class_inputs = spec.input_types(self._folders)
        names = set(class_inputs.get("required", {})).union(set(class_inputs.get("optional", {})))
        checked_by_node, takes_kwargs = self._validator_args(spec)
        errors: list[dict[str, Any]] = []
        valid = True
        visiting.add(unique_id)
        try:
            for name in names:
                outcome = self._check_input(
                    prompt, name, inputs, class_inputs, checked_by_node, takes_kwargs, validated, visiting
                )
                if outcome is False:
                    valid = False
                elif isinstance(outcome, dict):
                    errors.append(outcome)
            if checked_by_node or takes_kwargs:
                errors.extend(
                    self._custom_validation(spec, unique_id, inputs, class_inputs, checked_by_node, takes_kwargs)
                )
        finally:
            visiting.discard(unique_id)
        result: NodeResult = (False, errors, unique_id) if errors or valid is not True else (True, [], unique_id)
        validated[unique_id] = result
        return result

    def _check_input(
        self,
        prompt: Any,
        name: str,
        inputs: Any,
        class_inputs: dict[str, Any],
        checked_by_node: list[str],
        takes_kwargs: bool,
        validated: dict[Any, NodeResult],
        visiting: set[Any],
    ) -> dict[str, Any] | bool | None:
        """One input: an error dict, False when an upstream node failed, None when fine."""
        input_type, category, extra = _input_info(class_inputs, name)
        if name not in inputs:
            if category == "required":
                return _error("required_input_missing", "Required input is missing", f"{name}", {"input_name": name})
            return None
        val = inputs[name]
        info = (input_type, extra)
        if isinstance(val, list):
            if len(val) != 2:
                return _error(
                    "bad_linked_input",
                    "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                    f"{name}",
                    {"input_name": name, "input_config": info, "received_value": val},
                )
            return self._check_link(prompt, name, val, input_type, info, checked_by_node, validated, visiting)
        try:
            if isinstance(val, dict) and "__value__" in val:
                val = val["__value__"]
                inputs[name] = val
            val = _coerce(input_type, val)
            if input_type in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                inputs[name] = val
        except Exception as ex:
            return _error(
                "invalid_input_type",
                f"Failed to convert an input value to a {input_type} value",
                f"{name}, {val}, {ex}",
                {"input_name": name, "input_config": info, "received_value": val, "exception_message": str(ex)},
            )
        if name in checked_by_node or takes_kwargs:
            return None
        return self._check_range(name, val, input_type, extra, info)

    def _check_link(
        self,
        prompt: Any,
        name: str,
        val: list[Any],
        input_type: Any,
        info: tuple[Any, Any],
        checked_by_node: list[str],
        validated: dict[Any, NodeResult],
        visiting: set[Any],
    ) -> dict[str, Any] | bool | None:
        source_id = val[0]
        return_types = self._registry[prompt[source_id]["class_type"]].outputs
        received = return_types[val[1]]
        if "input_types" not in checked_by_node and not types_match(received, input_type):
            details = f"{name}, received_type({received}) mismatch input_type({input_type})"
            return _error(
                "return_type_mismatch",
                "Return type mismatch between linked nodes",
                details,
                {"input_name": name, "input_config": info, "received_type": received, "linked_node": val},
            )
        try:
            upstream = self._validate_node(prompt, source_id, validated, visiting)
            if upstream[0] is False:
                return False
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            reasons = [
                _error(
                    "exception_during_inner_validation",
                    "Exception when validating inner node",
                    str(ex),
                    {
                        "input_name": name,
                        "input_config": info,
                        "exception_message": str(ex),
                        "exception_type": type_name(typ or type(ex)),
                        "traceback": traceback.format_tb(tb),
                        "linked_node": val,
                    },
                )
            ]
            validated[source_id] = (False, reasons, source_id)
            return False
        return None

    def _check_range(
        self, name: str, val: Any, input_type: Any, extra: dict[str, Any], info: tuple[Any, Any]
    ) -> dict[str, Any] | None:
        if "min" in extra and val < extra["min"]:
            return _error(
                "value_smaller_than_min",
                f"Value {val} smaller than min of {extra['min']}",
                f"{name}",
                {"input_name": name, "input_config": info, "received_value": val},
            )
        if "max" in extra and val > extra["max"]:
            return _error(
                "value_bigger_than_max",
                f"Value {val} bigger than max of {extra['max']}",
                f"{name}",
                {"input_name": name, "input_config": info, "received_value": val},
            )
        if isinstance(input_type, list) and val not in input_type:
            # ComfyUI leaves long lists (scanned model files) out of the error.
            config: Any = info
            listing = str(input_type)
            if len(input_type) > 20:
                listing, config = f"(list of length {len(input_type)})", None
            shown = repr(val) if self._config.profile.repr_in_combo_details else f"'{val}'"
            return _error(
                "value_not_in_list",
                "Value not in list",
                f"{name}: {shown} not in {listing}",
                {"input_name": name, "input_config": config, "received_value": val},
            )
        return None

    @staticmethod
    def _validator_args(spec: NodeSpec) -> tuple[list[str], bool]:
        if spec.validate is None:
            return [], False
        full = inspect.getfullargspec(spec.validate)
        return [a for a in full.args if a != "ctx"], full.varkw is not None

    def _custom_validation(
        self,
        spec: NodeSpec,
        unique_id: Any,
        inputs: Any,
        class_inputs: dict[str, Any],
        checked_by_node: list[str],
        takes_kwargs: bool,
    ) -> list[dict[str, Any]]:
        """VALIDATE_INPUTS: called with the constant values it names (links arrive as None)."""
        assert spec.validate is not None
        filtered: dict[str, Any] = {}
        for name in inputs:
            _, category, _ = _input_info(class_inputs, name)
            value = inputs[name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                value = None
            elif category is None:
                continue
            if name in checked_by_node or takes_kwargs:
                filtered[name] = value
        ctx = NodeContext(
            node_id=str(unique_id),
            folders=self._folders,
            config=self._config,
            progress=_NoProgress(),
            state={},
            interrupted=lambda: False,
        )
        verdict = spec.validate(ctx, **filtered)
        errors = []
        for name in filtered or ():
            if verdict is not True:
                details = f"{name}" if verdict is False else f"{name} - {verdict}"
                errors.append(
                    _error(
                        "custom_validation_failed", "Custom validation failed for node", details, {"input_name": name}
                    )
                )
        return errors


def _find_loop(prompt: Any, node_id: str, path: list[str], done: set[str]) -> list[str] | None:
    """The first loop reached from `node_id` by following links upstream (depth first), as the list of its nodes."""
    if node_id in path:
        return path[path.index(node_id) :]
    node = prompt.get(node_id)
    if node_id in done or not isinstance(node, dict):
        return None
    path.append(node_id)
    inputs = node.get("inputs")
    for value in inputs.values() if isinstance(inputs, dict) else ():
        linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
        if linked and (loop := _find_loop(prompt, value[0], path, done)) is not None:
            return loop
    path.pop()
    done.add(node_id)
    return None


def _cycle_errors(prompt: Any, outputs: set[str]) -> dict[str, Any]:
    """ComfyUI >= ~0.20 reports a dependency cycle up front: each node on the loop gets a `dependency_cycle` error
    naming the loop (`2 (ImageInvert) -> 1 (ImageInvert) -> 2 (ImageInvert)`) and the outputs that depend on it."""
    node_errors: dict[str, Any] = {}
    for output_id in sorted(outputs, key=str):
        loop = _find_loop(prompt, output_id, [], set())
        if loop is None:
            continue
        details = " -> ".join(f"{n} ({prompt[n].get('class_type')})" for n in [*loop, loop[0]])
        for node_id in loop:
            error = _error(
                "dependency_cycle", "Dependency cycle detected", details, {"node_id": node_id, "cycle_nodes": loop}
            )
            entry = node_errors.setdefault(
                node_id, {"errors": [error], "dependent_outputs": [], "class_type": prompt[node_id].get("class_type")}
            )
            entry["dependent_outputs"].append(output_id)
    return node_errors
