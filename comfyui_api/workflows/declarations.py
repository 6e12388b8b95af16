"""The input-schema file format (YAML or JSON beside a graph) and the untyped declarations it yields.

Parsing and shape checks only; turning a declaration into a typed input (which needs the graph and ComfyUI's node
info) is `inputs.py`'s job. Problems raise DefinitionError with a message naming the entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from msgspec import UNSET, UnsetType

from comfyui_api.workflows.workflow import InputKind, Target

INPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TARGET = re.compile(r"(?P<node>.+?)\.inputs\.(?P<field>[^.\s]+)")
_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")

TypeName = Literal["string", "integer", "number", "boolean", "enum", "image", "audio", "video"]


class DefinitionError(ValueError):
    """A workflow definition is wrong; the message says where and why."""


@dataclass(frozen=True)
class InputDeclaration:
    """An input as written by the workflow's author (schema file or graph title markers), not yet checked against
    the graph. `origin` says where it came from, for error messages."""

    name: str
    targets: tuple[Target, ...]
    origin: str
    kind: InputKind | None = None
    default: Any | UnsetType = UNSET
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: tuple[Any, ...] | None = None
    description: str | None = None
    required: bool | None = None
    example: Any | UnsetType = UNSET
    randomize: bool = False


@dataclass(frozen=True)
class WorkflowDeclaration:
    """A parsed schema file. `inputs` is None when the file declares none (the graph's title markers are used)."""

    summary: str | None
    description: str | None
    inputs: tuple[InputDeclaration, ...] | None


class _InputEntry(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    target: str | None = None
    targets: list[str] | None = None
    type: TypeName | None = None
    default: Any | UnsetType = UNSET
    minimum: int | float | None = None
    maximum: int | float | None = None
    enum: list[Any] | None = None
    description: str | None = None
    required: bool | None = None
    example: Any | UnsetType = UNSET
    randomize: bool = False


class _SchemaFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    summary: str | None = None
    description: str | None = None
    inputs: dict[str, Any] | None = None


def read_declaration(path: Path) -> tuple[WorkflowDeclaration, list[str]]:
    """Parse a schema file. Returns the declaration and the problems of individual inputs (which are left out);
    raises DefinitionError when the file as a whole cannot be used."""
    document = _read_document(path)
    if document is None:
        document = {}
    try:
        parsed = msgspec.convert(document, _SchemaFile)
    except msgspec.ValidationError as exc:
        raise DefinitionError(_where(exc)) from None
    if parsed.inputs is None:
        return WorkflowDeclaration(parsed.summary, parsed.description, None), []
    declarations: list[InputDeclaration] = []
    problems: list[str] = []
    for name, entry in parsed.inputs.items():
        try:
            declarations.append(_declaration(str(name), entry))
        except DefinitionError as exc:
            problems.append(f"inputs.{name}: {exc}")
    return WorkflowDeclaration(parsed.summary, parsed.description, tuple(declarations)), problems


def parse_target(text: str) -> Target:
    """`"6.inputs.text"` -> Target("6", "text")."""
    match = _TARGET.fullmatch(text.strip())
    if not match:
        raise DefinitionError(f"target {text!r} must look like '<node id>.inputs.<input name>', e.g. '6.inputs.text'")
    return Target(match["node"], match["field"])


def _read_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"cannot be read: {exc}") from None
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise DefinitionError(f"is not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(f"is not valid YAML: {' '.join(str(exc).split())}") from None


def _declaration(name: str, raw: Any) -> InputDeclaration:
    if not INPUT_NAME.fullmatch(name):
        raise DefinitionError("an input name must be letters, digits and underscores, not starting with a digit")
    try:
        entry = msgspec.convert(raw, _InputEntry)
    except msgspec.ValidationError as exc:
        raise DefinitionError(_where(exc)) from None
    if (entry.target is None) == (entry.targets is None):
        raise DefinitionError("give exactly one of `target` (a string) or `targets` (a list)")
    texts = [entry.target] if entry.target is not None else list(entry.targets or [])
    if not texts:
        raise DefinitionError("`targets` is empty")
    return InputDeclaration(
        name=name,
        targets=tuple(parse_target(text) for text in texts),
        origin=f"inputs.{name}",
        kind=InputKind(entry.type) if entry.type is not None else None,
        default=entry.default,
        minimum=entry.minimum,
        maximum=entry.maximum,
        enum=tuple(entry.enum) if entry.enum is not None else None,
        description=entry.description,
        required=entry.required,
        example=entry.example,
        randomize=entry.randomize,
    )


def _where(exc: msgspec.ValidationError) -> str:
    # msgspec says "Object contains unknown field `x` - at `$.y`"; the `$.` prefix means nothing to an author.
    text = str(exc)
    match = _MSGSPEC_PATH.search(text)
    if match:
        text = text[: match.start()] + (f" (at `{match['path']}`)" if match["path"] else "")
    return text
