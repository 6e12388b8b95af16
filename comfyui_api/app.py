"""The application: `create_app(settings)` wires the HTTP routes to the services, and its lifespan builds them
(ComfyUI instance, job registry, stager, collector, runner), starts ComfyUI in the background, and closes it all.

The composition root: the only place that knows every service. Reads no environment (settings come in).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from comfyui_api.api.delivery_services import DeliveryServices
from comfyui_api.api.downloads import MODEL_LIBRARY_STATE_KEY, DownloadController
from comfyui_api.api.errors import EXCEPTION_HANDLERS
from comfyui_api.api.health import HealthController
from comfyui_api.api.interrupts import InterruptController
from comfyui_api.api.models import ModelsController
from comfyui_api.api.prompts import PromptController
from comfyui_api.api.services import STATE_KEY, Services, provide_services
from comfyui_api.api.workflow_routes import WorkflowRoutes
from comfyui_api.comfy.instance import ComfyInstance
from comfyui_api.errors import ComfyUnavailable
from comfyui_api.jobs.output_delivery import OutputDelivery
from comfyui_api.jobs.outputs import OutputCollector
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.remote_inputs import RegistryInputSource
from comfyui_api.jobs.runner import JobRunner
from comfyui_api.jobs.staging import InputStager
from comfyui_api.jobs.warmup import Warmup
from comfyui_api.models.download import storage_downloader
from comfyui_api.models.services import ModelServices
from comfyui_api.settings import Settings
from comfyui_api.startup import StartupSequence
from comfyui_api.storage.base import StorageEvent
from comfyui_api.storage.registry import StorageRegistry

log = logging.getLogger(__name__)

FatalHandler = Callable[[int], None]
FATAL_EXIT_CODE = 1
_DOWNLOAD_CONNECT_TIMEOUT_S = 10.0
_CANCEL_WAIT_S = 5.0  # cancelled jobs only withdraw their prompt from ComfyUI; that takes milliseconds
_COMFY_STOP_GRACE_S = 10.0  # SIGTERM to ComfyUI, then SIGKILL: jobs have been drained by then
_DELIVERY_CLOSE_S = 10.0  # webhooks still pending at shutdown (jobs were drained first) get this long


class ServiceRuntime:
    """Owns the services of one application run: opens them, drains them, closes them."""

    def __init__(self, settings: Settings, on_fatal: FatalHandler | None):
        self._settings = settings
        self._on_fatal = on_fatal
        self._work_dir = Path(tempfile.mkdtemp(prefix="comfyui-api-"))
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.jobs.download_timeout_s, connect=_DOWNLOAD_CONNECT_TIMEOUT_S)
        )
        self.instance = ComfyInstance(settings.comfy, on_fatal=self._comfy_gone)
        registry = JobRegistry(max_depth=settings.server.max_queue_depth)
        self.storage = StorageRegistry.from_settings(settings.storage, on_event=self._storage_event)
        self.models = ModelServices.from_settings(
            settings.models, settings.comfy, downloader=storage_downloader(self.storage), on_event=self._model_event
        )
        remote = RegistryInputSource(self.storage, settings.comfy.input_dir)
        # A ComfyUI on another machine cannot read input_dir: staged inputs are uploaded to it instead.
        uploader = None if settings.comfy.inputs_colocated else self.instance.client
        stager = InputStager(settings.jobs, settings.comfy.input_dir, http=self._http, remote=remote, uploader=uploader)
        collector = OutputCollector(settings.comfy, self.instance.client, self._work_dir)
        delivery = OutputDelivery(self.storage, max_fallback_bytes=settings.storage.max_base64_fallback_bytes)
        runner = JobRunner(
            self.instance,
            settings,
            registry=registry,
            stager=stager,
            collector=collector,
            delivery=delivery,
            models=self.models.resolver,
        )
        self.services = Services(
            settings=settings, instance=self.instance, registry=registry, runner=runner, storage=self.storage
        )
        self.startup = StartupSequence(
            self.instance, self.models, Warmup(settings.warmup), runner, on_fatal=self._startup_failed
        )
        self.services.startup = self.startup
        self.delivery = DeliveryServices.build(settings.webhooks, runner, self.instance.events)
        self.services.async_jobs = self.delivery.jobs
        self.services.extras["system_events"] = self.delivery.system_events
        self.instance.add_ready_callback(self.startup.on_comfy_ready)
        self._start_task: asyncio.Task[None] | None = None

    def _storage_event(self, event: StorageEvent) -> None:
        """storage.file_uploaded / storage.file_downloaded: forwarded to the system-events publisher, if one runs."""
        publisher = self.services.extras.get("system_events")
        if publisher is not None:
            publisher.publish(event.name, event.data())

    def _model_event(self, name: str, data: Mapping[str, Any]) -> None:
        """storage.file_downloaded / storage.file_deleted of the model cache, like `_storage_event`."""
        publisher = self.services.extras.get("system_events")
        if publisher is not None:
            publisher.publish(name, data)

    def start(self) -> None:
        """Start ComfyUI in the background: the HTTP server answers /health and /ready meanwhile."""
        self._settings.comfy.input_dir.mkdir(parents=True, exist_ok=True)
        self._start_task = asyncio.create_task(self._start_comfy(), name="comfyui-start")
        self.delivery.start()

    async def _start_comfy(self) -> None:
        if not await self.startup.before_comfy_starts():
            return
        try:
            await self.instance.start()
        except ComfyUnavailable as exc:
            log.critical("ComfyUI did not start: %s", exc.message)
            self._comfy_gone(None)

    def _startup_failed(self, reason: str) -> None:
        self.services.registry.stop_admitting()
        if self._on_fatal is not None:
            self._on_fatal(FATAL_EXIT_CODE)

    def _comfy_gone(self, returncode: int | None) -> None:
        log.critical("ComfyUI is gone (exit code %s): the server stops", returncode)
        self.services.registry.stop_admitting()
        if self._on_fatal is not None:
            self._on_fatal(FATAL_EXIT_CODE)

    async def drain(self, grace_s: float) -> None:
        """Refuse new jobs (/ready turns 503), let live jobs finish for up to grace_s, then cancel the rest."""
        registry = self.services.registry
        registry.stop_admitting()
        log.info("draining: %d job(s) in flight, waiting up to %gs", registry.depth, grace_s)
        if not await registry.wait_idle(grace_s):
            log.warning("draining: %d job(s) still running after %gs", registry.depth, grace_s)
            await self.cancel_jobs()

    async def cancel_jobs(self) -> None:
        """Cancel every live job (each fails with JobCancelled) and wait briefly for them to wind down."""
        registry = self.services.registry
        registry.stop_admitting()
        for entry in registry:
            entry.request_cancel("cancelled: the server is shutting down")
        await registry.wait_idle(_CANCEL_WAIT_S)

    async def close(self) -> None:
        self.services.registry.stop_admitting()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._start_task
        await self.delivery.aclose(_DELIVERY_CLOSE_S)
        await self.instance.stop(_COMFY_STOP_GRACE_S)
        await self._http.aclose()
        await self.models.aclose()
        await self.storage.aclose()
        shutil.rmtree(self._work_dir, ignore_errors=True)


def _lifespan(
    settings: Settings, on_fatal: FatalHandler | None
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        runtime = ServiceRuntime(settings, on_fatal)
        app.state[STATE_KEY] = runtime.services
        app.state["runtime"] = runtime
        app.state[MODEL_LIBRARY_STATE_KEY] = runtime.models.library
        if settings.workflows.workflow_dir is not None:
            routes = WorkflowRoutes(app, settings.workflows.workflow_dir, runtime.instance.client)
            runtime.startup.serve_workflows(routes.load)
        runtime.start()
        try:
            yield
        finally:
            await runtime.close()

    return lifespan


def runtime_of(app: Litestar) -> ServiceRuntime | None:
    """The running services of `app`, or None before start-up / after shutdown."""
    runtime = app.state.get("runtime")
    return runtime if isinstance(runtime, ServiceRuntime) else None


def _package_version() -> str:
    try:
        return importlib.metadata.version("comfyui-api")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings, *, on_fatal: FatalHandler | None = None) -> Litestar:
    """The application with its services. `on_fatal(exit_code)` is called when ComfyUI is gone for good."""
    return build_http_app(settings, lifespan=[_lifespan(settings, on_fatal)])


def build_http_app(
    settings: Settings,
    *,
    lifespan: Sequence[Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]] = (),
    state: Mapping[str, Any] | None = None,
) -> Litestar:
    """Routes, error mapping, body limit and docs; the services come from `lifespan` (or `state`, in tests)."""
    return Litestar(
        route_handlers=[PromptController, InterruptController, HealthController, ModelsController, DownloadController],
        lifespan=list(lifespan),
        state=State(dict(state or {})),
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=dict(EXCEPTION_HANDLERS),
        request_max_body_size=settings.server.max_body_bytes,
        logging_config=None,  # the command line configures logging once, for every library
        openapi_config=OpenAPIConfig(
            title="comfyui-api",
            version=_package_version(),
            description="Run ComfyUI workflows over HTTP.",
            path="/docs",
            render_plugins=[SwaggerRenderPlugin(path="/")],
        ),
    )
