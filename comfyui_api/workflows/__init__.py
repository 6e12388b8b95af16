"""Typed workflow endpoints: graphs under WORKFLOW_DIR served as POST /workflow/<route> with named, checked inputs.

Load with `WorkflowCatalog.load(workflow_dir, object_info, default_checkpoint=...)`; the HTTP handlers are built in
`api/workflow_handlers.py`. No framework import here. Format: docs/workflows/README.md.
"""

from __future__ import annotations

from comfyui_api.workflows.catalog import WorkflowCatalog, WorkflowLoadError
from comfyui_api.workflows.workflow import InputKind, Target, Workflow, WorkflowInput

__all__ = [
    "InputKind",
    "Target",
    "Workflow",
    "WorkflowCatalog",
    "WorkflowInput",
    "WorkflowLoadError",
]
