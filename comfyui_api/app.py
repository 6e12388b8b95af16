"""The web application: `create_app(settings)` builds the Litestar app whose lifespan builds a `Runtime` (every
service, see `runtime.py`), serves its front doors (POST /prompt, the job API, workflow endpoints, health) and closes
it all. Reads no environment (settings come in); owns no service.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import RedocRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components
from litestar.static_files import create_static_files_router

from comfyui_api.api.auth import SECURITY_SCHEMES, ApiKeyMiddleware, ApiKeys
from comfyui_api.api.comfy_gateway import GATEWAY_STATE_KEY, ComfyGateway, ComfyGatewayController, comfy_websocket
from comfyui_api.api.docs_routes import redoc_redirect
from comfyui_api.api.downloads import MODEL_LIBRARY_STATE_KEY, DownloadController
from comfyui_api.api.errors import EXCEPTION_HANDLERS
from comfyui_api.api.gateway_v1 import GatewayV1Controller, gateway_websocket
from comfyui_api.api.health import HealthController
from comfyui_api.api.interrupts import InterruptController
from comfyui_api.api.jobs import JobsController
from comfyui_api.api.large_bodies import ReleaseLargeBodies
from comfyui_api.api.metrics_route import METRICS_STATE_KEY, MetricsController
from comfyui_api.api.models import ModelsController
from comfyui_api.api.prompts import PromptController
from comfyui_api.api.runpod_routes import RunpodController
from comfyui_api.api.services import STATE_KEY, Services, provide_services
from comfyui_api.api.workflow_routes import WORKFLOW_ROUTES_STATE_KEY, WorkflowRoutes
from comfyui_api.runtime import FatalHandler, Runtime
from comfyui_api.settings import Settings
from comfyui_api.version import package_version

_RUNTIME_KEY = "runtime"
DOCS_ASSETS = "/docs/assets"  # Swagger UI from the swagger-ui-py package
REDOC_ASSETS = "/docs/redoc-assets"  # ReDoc's standalone bundle from the mkdocs-redoc-tag package


def _lifespan(
    settings: Settings, on_fatal: FatalHandler | None, keys: ApiKeys
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if settings.server.api_keys_file is not None:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keys.reload)
        runtime = Runtime(settings, on_fatal=on_fatal)
        app.state[STATE_KEY] = Services.of(runtime)
        app.state[_RUNTIME_KEY] = runtime
        app.state[MODEL_LIBRARY_STATE_KEY] = runtime.models.library
        app.state[METRICS_STATE_KEY] = runtime.metrics
        if settings.workflows.workflow_dir is not None:
            routes = WorkflowRoutes(app, settings.workflows.workflow_dir, runtime.instance.client)
            app.state[WORKFLOW_ROUTES_STATE_KEY] = routes  # the /api/v1 scenarios find their workflows there
            runtime.startup.serve_workflows(routes.load)
        runtime.start()
        gateway = ComfyGateway(runtime.jobs, passthrough=settings.server.comfy_passthrough)
        app.state[GATEWAY_STATE_KEY] = gateway
        if settings.amqp.enabled:
            from comfyui_api.amqp.worker import AmqpWorker  # aio-pika only when AMQP is configured

            consumer = AmqpWorker(runtime, settings.amqp, system_meta=settings.webhooks.system_meta)
            runtime.attach(consumer)
            consumer.start()
        try:
            yield
        finally:
            await gateway.aclose()
            await runtime.close()

    return lifespan


def runtime_of(app: Litestar) -> Runtime | None:
    """The running services of `app`, or None before start-up / after shutdown."""
    runtime = app.state.get(_RUNTIME_KEY)
    return runtime if isinstance(runtime, Runtime) else None


def create_app(settings: Settings, *, on_fatal: FatalHandler | None = None, job_api: bool = True) -> Litestar:
    """The application with its services. `on_fatal(exit_code)` is called when ComfyUI is gone for good.
    `job_api=False` (`comfyui-api worker`): only /health and /ready; work arrives through the AMQP consumer."""
    keys = ApiKeys(settings.server)
    return build_http_app(settings, lifespan=[_lifespan(settings, on_fatal, keys)], keys=keys, job_api=job_api)


def package_folder(package: str, distribution: str, *parts: str) -> Path:
    """A folder of files inside an installed package, found without importing the package (the docs pages need
    only the files, not the web framework adapters or plugins that come with them)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{distribution} is not installed: pip install {distribution}")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def swagger_ui_assets() -> Path:
    """Swagger UI's files (5.x: it renders OpenAPI 3.1), as the swagger-ui-py package carries them."""
    return package_folder("swagger_ui", "swagger-ui-py", "static")


def redoc_assets() -> Path:
    """ReDoc's standalone bundle (2.x: it renders OpenAPI 3.1), as the mkdocs-redoc-tag package carries it."""
    return package_folder("mkdocs_redoc_tag", "mkdocs-redoc-tag", "redoc", "javascripts")


def build_http_app(
    settings: Settings,
    *,
    lifespan: Sequence[Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]] = (),
    state: Mapping[str, Any] | None = None,
    keys: ApiKeys | None = None,
    job_api: bool = True,
) -> Litestar:
    """Routes, error mapping, body limit, API keys and docs; the services come from `lifespan` (or `state`, in
    tests). Without `job_api`, only the health routes."""
    keys = keys if keys is not None else ApiKeys(settings.server)
    handlers: list[Any] = [HealthController, MetricsController, redoc_redirect]
    if job_api:
        handlers += [PromptController, JobsController, InterruptController, ModelsController, RunpodController]
        handlers.append(DownloadController)
        if settings.server.comfy_passthrough != "off":
            handlers += [ComfyGatewayController, comfy_websocket, GatewayV1Controller, gateway_websocket]
    security: dict[str, Any] = {}
    if keys.enabled:
        security = {
            "components": Components(security_schemes=dict(SECURITY_SCHEMES)),
            "security": [{name: []} for name in SECURITY_SCHEMES],
        }
    return Litestar(
        route_handlers=[
            *handlers,
            create_static_files_router(path=DOCS_ASSETS, directories=[swagger_ui_assets()]),
            create_static_files_router(path=REDOC_ASSETS, directories=[redoc_assets()]),
        ],
        middleware=[ReleaseLargeBodies(), ApiKeyMiddleware(keys)],
        lifespan=list(lifespan),
        state=State(dict(state or {})),
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=dict(EXCEPTION_HANDLERS),
        request_max_body_size=settings.server.max_body_bytes,
        logging_config=None,  # the command line configures logging once, for every library
        openapi_config=OpenAPIConfig(
            title="comfyui-api",
            version=package_version(),
            description="Run ComfyUI workflows over HTTP.",
            path="/docs",
            # Swagger UI's and ReDoc's assets come from packages and are served here: /docs and /docs/redoc work
            # with no internet (and no web fonts: ReDoc falls back to the system's).
            render_plugins=[
                SwaggerRenderPlugin(
                    path="/",
                    js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{DOCS_ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{DOCS_ASSETS}/favicon-32x32.png'>",
                ),
                RedocRenderPlugin(path="/redoc", js_url=f"{REDOC_ASSETS}/redoc.standalone.js", google_fonts=False),
            ],
            **security,
        ),
    )
