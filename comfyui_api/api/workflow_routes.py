"""POST /workflow/<route>: the WORKFLOW_DIR catalog, loaded against ComfyUI's /object_info once ComfyUI is ready and
registered on the running app (with /docs refreshed); each request runs exactly as POST /prompt runs its body.

Why at run time: the catalog's choices, limits and defaults come from /object_info, which only a running ComfyUI
has, while the server must answer /health and /ready during a long start (manifest, model downloads). Until the
routes exist, /workflow/... answers 404 and /ready says "loading_workflows".
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

from litestar import Litestar, Request, Response
from litestar._openapi.plugin import OpenAPIPlugin

from comfyui_api.api.prompts import PROMPT_RESPONSES, run_prompt
from comfyui_api.api.services import provide_services
from comfyui_api.api.workflow_handlers import build_workflow_controllers
from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.workflows import WorkflowCatalog

log = logging.getLogger(__name__)

WORKFLOW_ROUTES_STATE_KEY = "workflow_routes"


def loaded_catalog(app: Litestar) -> WorkflowCatalog | None:
    """The workflow catalog the app serves, once loaded (None before, or without WORKFLOW_DIR)."""
    routes = app.state.get(WORKFLOW_ROUTES_STATE_KEY)
    return routes.catalog if isinstance(routes, WorkflowRoutes) else None


class ObjectInfoSource(Protocol):
    async def object_info(self) -> dict[str, Any]: ...


async def submit_workflow(
    graph: dict[str, Any], options: PromptRequest, request: Request[Any, Any, Any]
) -> Response[Any]:
    """A workflow request, its graph bound from `input`, handed to POST /prompt's own handling."""
    return await run_prompt(options, provide_services(request.app.state), request)


class WorkflowRoutes:
    """Loads the catalog once and registers its handlers on `app`; `load` is a `startup.WorkflowLoader`."""

    def __init__(self, app: Litestar, workflow_dir: Path, comfy: ObjectInfoSource):
        self._app = app
        self._workflow_dir = workflow_dir
        self._comfy = comfy
        self.catalog: WorkflowCatalog | None = None

    async def load(self, default_checkpoint: str | None) -> int:
        """Read WORKFLOW_DIR (WorkflowLoadError lists every problem) and serve it; returns the number of routes.
        A ComfyApiError (ComfyUI gone while asked) leaves nothing registered, so a later call can try again."""
        if self.catalog is not None:
            return len(self.catalog)
        object_info = await self._comfy.object_info()
        catalog = await asyncio.to_thread(
            WorkflowCatalog.load, self._workflow_dir, object_info, default_checkpoint=default_checkpoint
        )
        handlers = build_workflow_controllers(
            catalog,
            submit_workflow,
            options_type=PromptRequest,
            # A Response, as POST /prompt's: a concrete body type would make Litestar force its JSON media type
            # onto the SSE stream `run_prompt` may return. The bodies are documented by PROMPT_RESPONSES.
            response_type=Response[Any],
            responses=PROMPT_RESPONSES,
        )
        for handler in handlers:
            self._app.register(handler)
        _forget_openapi_document(self._app)
        self.catalog = catalog
        log.info("workflow endpoints: %s", ", ".join(f"/workflow/{w.route}" for w in catalog) or "none")
        return len(catalog)


def _forget_openapi_document(app: Litestar) -> None:
    # Litestar drops its OpenAPI model when a route is registered, but keeps the rendered document it serves at
    # /docs/openapi.json; without this, a schema fetched before the workflows were loaded would hide them.
    plugin = app.plugins.get(OpenAPIPlugin)
    plugin._openapi_schema = None
