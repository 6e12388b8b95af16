"""The workflow catalog: every graph under WORKFLOW_DIR with its typed inputs, loaded and checked once at start-up.

Reads files only (no network, no code execution). Any problem fails the whole load with WorkflowLoadError, which
lists every problem with the file and entry it concerns.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comfyui_api.workflows.declarations import DefinitionError, InputDeclaration, WorkflowDeclaration, read_declaration
from comfyui_api.workflows.inputs import resolve_input
from comfyui_api.workflows.markers import marker_declarations
from comfyui_api.workflows.workflow import Workflow, WorkflowInput

_ROUTE_PART = re.compile(r"[A-Za-z0-9_-]+")
log = logging.getLogger(__name__)
_SCHEMA_SUFFIXES = (".schema.json", ".yaml", ".yml")


class WorkflowLoadError(ValueError):
    """WORKFLOW_DIR holds something that cannot be served; `problems` lists each one as `file: entry: why`."""

    def __init__(self, workflow_dir: Path, problems: list[str]):
        self.problems = tuple(problems)
        listing = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"WORKFLOW_DIR {workflow_dir}: {len(problems)} problem(s):\n{listing}")


@dataclass(frozen=True)
class WorkflowCatalog:
    """The workflows to serve, sorted by route (`sdxl/txt2img` for WORKFLOW_DIR/sdxl/txt2img.json)."""

    workflows: tuple[Workflow, ...] = ()

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self.workflows)

    def __len__(self) -> int:
        return len(self.workflows)

    def get(self, route: str) -> Workflow | None:
        return next((workflow for workflow in self.workflows if workflow.route == route), None)

    @classmethod
    def load(
        cls,
        workflow_dir: Path,
        object_info: Mapping[str, Any] | None,
        *,
        default_checkpoint: str | None = None,
    ) -> WorkflowCatalog:
        """Load every `*.json` graph under `workflow_dir` with its schema file (`NAME.yaml`, `NAME.yml` or
        `NAME.schema.json`) or, without one, the inputs marked in its node titles.

        `object_info` is ComfyUI's GET /object_info (None skips the checks and choices it provides);
        `default_checkpoint` becomes the default of inputs that set a `ckpt_name`, where ComfyUI offers it.
        """
        if not workflow_dir.is_dir():
            raise WorkflowLoadError(workflow_dir, [f"{workflow_dir} is not a directory"])
        graphs, schemas = _scan(workflow_dir)
        for code in _code_files(workflow_dir):  # compat: salad's workflows are TypeScript/JavaScript modules
            log.warning(
                "WORKFLOW_DIR: %s is code, which this server never runs; export the graph as JSON (Export (API)) "
                "next to a schema file (NAME.json + NAME.yaml) to serve it as a workflow endpoint",
                _relative(workflow_dir, code),
            )
        problems = [
            f"{_relative(workflow_dir, paths[0])}: a schema file without a graph {route}.json"
            for route, paths in schemas.items()
            if route not in graphs
        ]
        workflows: list[Workflow] = []
        for route, graph_path in sorted(graphs.items()):
            loader = _WorkflowLoader(workflow_dir, route, graph_path, schemas.get(route, []))
            workflow = loader.load(object_info, default_checkpoint)
            problems.extend(loader.problems)
            if workflow is not None:
                workflows.append(workflow)
        if problems:
            raise WorkflowLoadError(workflow_dir, problems)
        return cls(tuple(workflows))


def _scan(workflow_dir: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    graphs: dict[str, Path] = {}
    schemas: dict[str, list[Path]] = {}
    for path in sorted(workflow_dir.rglob("*")):
        relative = path.relative_to(workflow_dir)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        name = relative.as_posix()
        suffix = next((s for s in _SCHEMA_SUFFIXES if name.endswith(s)), None)
        if suffix is not None:
            schemas.setdefault(name[: -len(suffix)], []).append(path)
        elif name.endswith(".json"):
            graphs[name[: -len(".json")]] = path
    return graphs, schemas


def _code_files(workflow_dir: Path) -> list[Path]:
    return sorted(p for p in workflow_dir.rglob("*") if p.is_file() and p.suffix in (".ts", ".js", ".mjs", ".cjs"))


def _relative(workflow_dir: Path, path: Path) -> str:
    return path.relative_to(workflow_dir).as_posix()


class _WorkflowLoader:
    """Loads one workflow, collecting its problems instead of stopping at the first."""

    def __init__(self, workflow_dir: Path, route: str, graph_path: Path, schema_paths: list[Path]):
        self.route = route
        self.graph_path = graph_path
        self.schema_paths = schema_paths
        self.graph_name = _relative(workflow_dir, graph_path)
        self.schema_names = [_relative(workflow_dir, path) for path in schema_paths]
        self.problems: list[str] = []

    def load(self, object_info: Mapping[str, Any] | None, default_checkpoint: str | None) -> Workflow | None:
        if not all(_ROUTE_PART.fullmatch(part) for part in self.route.split("/")):
            self.problems.append(
                f"{self.graph_name}: each part of the endpoint path {self.route!r} may hold only letters, digits, "
                "'_' and '-'"
            )
        if len(self.schema_paths) > 1:
            self.problems.append(f"{self.graph_name}: several schema files ({', '.join(self.schema_names)}); keep one")
        graph = self._graph()
        declaration = self._declaration()
        if graph is None or declaration is None or self.problems:
            return None
        inputs = self._inputs(graph, declaration, object_info, default_checkpoint)
        if self.problems:
            return None
        return Workflow(
            route=self.route,
            graph=graph,
            inputs=tuple(inputs),
            summary=declaration.summary or f"Run the {self.route} workflow",
            description=declaration.description or f"Runs {self.graph_name} with the values of `input` applied.",
            source=self.graph_path,
        )

    def _graph(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.graph_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            self.problems.append(f"{self.graph_name}: cannot be read: {exc}")
            return None
        except json.JSONDecodeError as exc:
            self.problems.append(f"{self.graph_name}: is not valid JSON: {exc}")
            return None
        shape_problems = graph_shape_problems(document)
        self.problems.extend(f"{self.graph_name}: {problem}" for problem in shape_problems)
        return document if not shape_problems else None

    def _declaration(self) -> WorkflowDeclaration | None:
        if not self.schema_paths:
            return WorkflowDeclaration(summary=None, description=None, inputs=None)
        name = self.schema_names[0]
        try:
            declaration, input_problems = read_declaration(self.schema_paths[0])
        except DefinitionError as exc:
            self.problems.append(f"{name}: {exc}")
            return None
        self.problems.extend(f"{name}: {problem}" for problem in input_problems)
        return declaration

    def _inputs(
        self,
        graph: Mapping[str, Any],
        declaration: WorkflowDeclaration,
        object_info: Mapping[str, Any] | None,
        default_checkpoint: str | None,
    ) -> list[WorkflowInput]:
        declarations: tuple[InputDeclaration, ...] | list[InputDeclaration]
        if declaration.inputs is not None:
            declarations, source = declaration.inputs, self.schema_names[0]
        else:
            declarations, marker_problems = marker_declarations(graph)
            source = self.graph_name
            self.problems.extend(f"{source}: {problem}" for problem in marker_problems)
        inputs: list[WorkflowInput] = []
        for item in declarations:
            try:
                inputs.append(resolve_input(item, graph, object_info, default_checkpoint=default_checkpoint))
            except DefinitionError as exc:
                self.problems.append(f"{source}: {item.origin}: {exc}")
        self._check_overlaps(inputs, source)
        return inputs

    def _check_overlaps(self, inputs: list[WorkflowInput], source: str) -> None:
        owners: dict[str, str] = {}
        for spec in inputs:
            for target in spec.targets:
                owner = owners.setdefault(str(target), spec.name)
                if owner != spec.name:
                    self.problems.append(f"{source}: inputs {owner} and {spec.name} both set {target}")


def graph_shape_problems(document: Any) -> list[str]:
    """Why `document` is not an API-format graph (an object of nodes, each with class_type and inputs)."""
    if isinstance(document, Mapping) and isinstance(document.get("nodes"), list) and "links" in document:
        return ["is a UI-format workflow; export it from ComfyUI with 'Export (API)'"]
    if not isinstance(document, Mapping):
        return ["must be an API-format graph: a JSON object mapping node ids to nodes"]
    if not document:
        return ["has no nodes"]
    problems = []
    for node_id, node in document.items():
        if not isinstance(node, Mapping):
            problems.append(f"node {node_id}: must be an object")
        elif not isinstance(node.get("class_type"), str) or not node["class_type"]:
            problems.append(f"node {node_id}: has no class_type")
        elif not isinstance(node.get("inputs", {}), Mapping):
            problems.append(f"node {node_id}: `inputs` must be an object")
    return problems
