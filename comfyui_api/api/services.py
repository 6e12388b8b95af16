"""The services request handlers see (settings, ComfyUI instance, job registry, runner, job service, storage,
webhooks, start-up steps) and the server's readiness. Built from the `Runtime` by the application lifespan
(`app.py`); handlers receive it by dependency injection.

Holds no module-level state: one `Services` per application.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from litestar.datastructures import State
from litestar.di import NamedDependency

from comfyui_api.delivery.job_webhooks import JobWebhooks
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.runner import ComfyInstanceLike, JobRunner
from comfyui_api.jobs.service import JobService
from comfyui_api.runtime import Runtime, readiness_phase
from comfyui_api.settings import Settings
from comfyui_api.startup import StartupSequence
from comfyui_api.storage.registry import StorageRegistry
from comfyui_api.workflows.ui_conversion import UiWorkflows

STATE_KEY = "services"


@dataclass
class Services:
    settings: Settings
    instance: ComfyInstanceLike
    registry: JobRegistry
    runner: JobRunner
    jobs: JobService
    storage: StorageRegistry | None = None  # None: uploads are refused (400)
    startup: StartupSequence | None = None  # manifest, model folders, workflows, warmup: /ready waits for them
    webhooks: JobWebhooks | None = None  # None: no webhook is sent (and none can be redelivered)
    phase: Callable[[], str] | None = None  # the runtime's readiness (its front doors count); None: the services'
    ui_workflows: UiWorkflows | None = None  # None: a UI-format workflow is refused (no node definitions here)

    @classmethod
    def of(cls, runtime: Runtime) -> Services:
        return cls(
            settings=runtime.settings,
            instance=runtime.instance,
            registry=runtime.registry,
            runner=runtime.runner,
            jobs=runtime.jobs,
            storage=runtime.storage,
            startup=runtime.startup,
            webhooks=runtime.webhooks,
            phase=runtime.readiness_phase,
            ui_workflows=runtime.ui_workflows,
        )

    @property
    def draining(self) -> bool:
        return not self.registry.accepting

    async def api_graph(self, graph: dict[str, Any], *, field: str = "prompt") -> dict[str, Any]:
        """`graph` in the API format: a workflow as the editor saves it is converted (see `UiWorkflows`)."""
        if self.ui_workflows is None:
            return graph
        return await self.ui_workflows.to_api(graph, field=field)

    def readiness_phase(self) -> str:
        """ "ready", or why not (see `runtime.readiness_phase`)."""
        if self.phase is not None:
            return self.phase()
        return readiness_phase(self.registry, self.instance, self.startup)


ServicesDependency = NamedDependency[Services]
"""Annotation for a handler parameter named `services`."""


def provide_services(state: State) -> Services:
    services = state.get(STATE_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("the application's services are not running (lifespan not started)")
    return services
