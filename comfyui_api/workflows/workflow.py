"""A loaded workflow: its graph, its typed inputs, and how a request's `input` object becomes a graph copy.

Pure data and validation: no files, no HTTP, no ComfyUI calls. Request problems raise InvalidRequest naming
`input.<name>`; the stored graph is never mutated.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeGuard

from msgspec import UNSET, UnsetType

from comfyui_api.errors import InvalidRequest

MAX_RANDOM_SEED = 2**53 - 1
"""Upper end of randomised integers: the largest integer every JSON client can read back exactly."""

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_\-\s]+=*\s*")
_SHOWN_CHOICES = 12
_BASE64_MIN_CHARS = 64  # staging takes shorter dotless strings for file names, so they cannot be base64 here


class InputKind(StrEnum):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    ENUM = "enum"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"

    @property
    def is_media(self) -> bool:
        return self in (InputKind.IMAGE, InputKind.AUDIO, InputKind.VIDEO)


@dataclass(frozen=True)
class Target:
    """One node input a workflow input writes to."""

    node_id: str
    field: str

    def __str__(self) -> str:
        return f"{self.node_id}.inputs.{self.field}"


@dataclass(frozen=True)
class WorkflowInput:
    """One named input of a workflow endpoint.

    `options` restricts the accepted values (always set for ENUM). `default` (or UNSET) is applied when an optional
    input is omitted; `randomize` draws a fresh integer in [minimum, maximum] instead. An optional input with
    neither leaves the graph's own value in place.
    """

    name: str
    kind: InputKind
    targets: tuple[Target, ...]
    required: bool = False
    default: Any | UnsetType = UNSET
    minimum: int | float | None = None
    maximum: int | float | None = None
    options: tuple[Any, ...] = ()
    description: str | None = None
    example: Any | UnsetType = UNSET
    randomize: bool = False

    def check(self, value: Any) -> Any:
        """Return `value` if it is acceptable for this input; otherwise raise ValueError saying why."""
        kind = self.kind
        if kind is InputKind.BOOLEAN:
            if not isinstance(value, bool):
                raise ValueError(f"must be a boolean, got {_json_type(value)}")
        elif kind is InputKind.INTEGER:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"must be an integer, got {_json_type(value)}")
            self._check_bounds(value)
        elif kind is InputKind.NUMBER:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"must be a finite number, got {_json_type(value)}")
            self._check_bounds(value)
        elif kind.is_media:
            _check_media(kind, value)
        elif kind is InputKind.STRING and not isinstance(value, str):
            raise ValueError(f"must be a string, got {_json_type(value)}")
        if self.options and not any(type(option) is type(value) and option == value for option in self.options):
            raise ValueError(f"must be one of {_choices(self.options)}, got {value!r}")
        return value

    def random_value(self, rng: random.Random) -> int:
        low = int(self.minimum) if self.minimum is not None else 0
        high = min(int(self.maximum), MAX_RANDOM_SEED) if self.maximum is not None else MAX_RANDOM_SEED
        return rng.randint(low, high)

    def _check_bounds(self, value: int | float) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"must be at least {self.minimum}, got {value}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"must be at most {self.maximum}, got {value}")


RANDOM = -1  # the value of a `randomize` input that asks for a fresh random one, as if it had been omitted


@dataclass(frozen=True)
class Workflow:
    """An API-format graph served as POST /workflow/<route>, with the inputs a caller may set."""

    route: str
    graph: Mapping[str, Any]
    inputs: tuple[WorkflowInput, ...]
    summary: str
    description: str
    source: Path

    def input_named(self, name: str) -> WorkflowInput | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def bind(self, values: Any, *, rng: random.Random | None = None) -> dict[str, Any]:
        """Validate a request's `input` object and return a copy of the graph with the values applied.

        `None` stands for `{}`; an input given as null counts as omitted. Raises InvalidRequest naming
        `input.<name>` for an unknown name, a missing required input or a value of the wrong type or range.
        """
        if values is None:
            values = {}
        if not isinstance(values, Mapping):
            raise InvalidRequest(f"input must be an object, got {_json_type(values)}", field="input")
        known = {spec.name for spec in self.inputs}
        unknown = sorted(str(name) for name in values if name not in known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "no inputs"
            raise InvalidRequest(
                f"input.{unknown[0]} is not an input of workflow {self.route} (it takes: {accepted})",
                field=f"input.{unknown[0]}",
            )
        graph = copy.deepcopy(dict(self.graph))
        chooser = rng or random.SystemRandom()
        for spec in self.inputs:
            value = self._value_for(spec, values.get(spec.name), chooser)
            if value is UNSET:
                continue
            for target in spec.targets:
                graph[target.node_id].setdefault("inputs", {})[target.field] = value
        return graph

    def _value_for(self, spec: WorkflowInput, given: Any, rng: random.Random) -> Any:
        field = f"input.{spec.name}"
        if spec.randomize and given == RANDOM:  # -1, as many UIs spell "a random seed"
            return spec.random_value(rng)
        if given is not None:
            try:
                return spec.check(given)
            except ValueError as exc:
                raise InvalidRequest(f"{field} {exc}", field=field) from None
        if spec.required:
            raise InvalidRequest(f"{field} is required", field=field)
        if spec.randomize:
            return spec.random_value(rng)
        return copy.deepcopy(spec.default)


def is_link(value: Any) -> TypeGuard[list[Any]]:
    """True for a graph input that is a connection `[node_id, output_index]` rather than a literal value."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _check_media(kind: InputKind, value: Any) -> None:
    # Only the shape is checked here; staging downloads or decodes the value and reports a bad one itself.
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string holding the {kind.value} as a URL or base64")
    text = value.strip()
    if text.startswith("data:") or _URL.fullmatch(text):
        return
    if len(text) >= _BASE64_MIN_CHARS and "." not in text and _BASE64.fullmatch(text):
        return
    raise ValueError(f"must be a URL (e.g. https://...) or base64-encoded {kind.value}, got {_preview(text)}")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _choices(options: tuple[Any, ...]) -> str:
    shown = ", ".join(repr(option) for option in options[:_SHOWN_CHOICES])
    more = len(options) - _SHOWN_CHOICES
    return f"[{shown}, ... ({more} more)]" if more > 0 else f"[{shown}]"


def _preview(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")
