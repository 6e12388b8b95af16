"""The services one server runs (ComfyUI instance, runner, job registry) and their readiness, as request handlers
see them. Built and closed by the application lifespan (`app.py`); handlers receive it by dependency injection.

Holds no module-level state: one `Services` per application.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from litestar.datastructures import State
from litestar.di import NamedDependency

from comfyui_api.api.async_jobs import AsyncJobs
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.runner import ComfyInstanceLike, JobRunner
from comfyui_api.settings import Settings
from comfyui_api.startup import StartupSequence
from comfyui_api.storage.registry import StorageRegistry

STATE_KEY = "services"


@dataclass
class Services:
    settings: Settings
    instance: ComfyInstanceLike
    registry: JobRegistry
    runner: JobRunner
    extras: dict[str, Any] = field(default_factory=dict)  # later services (webhooks, storage) register here
    storage: StorageRegistry | None = None  # None: uploads are refused (400)
    startup: StartupSequence | None = None  # manifest, model folders, workflows, warmup: /ready waits for them
    async_jobs: AsyncJobs | None = None  # webhook, async and event-stream jobs; None: only synchronous ones

    @property
    def draining(self) -> bool:
        return not self.registry.accepting

    def readiness_phase(self) -> str:
        """ "ready", or why not: "draining", "provisioning", ComfyUI's phase, a start-up step ("models_pending",
        "loading_workflows", "warmup", "warmup_failed"), or "queue_full"."""
        if self.draining:
            return "draining"
        if self.startup is not None and (step := self.startup.blocking_phase()) is not None:
            return step
        if not self.instance.is_ready:
            return self.instance.phase
        if self.registry.is_full:
            return "queue_full"
        return "ready"


ServicesDependency = NamedDependency[Services]
"""Annotation for a handler parameter named `services`."""


def provide_services(state: State) -> Services:
    services = state.get(STATE_KEY)
    if not isinstance(services, Services):
        raise RuntimeError("the application's services are not running (lifespan not started)")
    return services
