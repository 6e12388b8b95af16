"""GET /health (the process is up and ComfyUI started at least once) and GET /ready (ComfyUI is up, its start-up
steps are done, the server is not draining and the queue has room). Both answer from in-memory state only: no call
to ComfyUI.
"""

from __future__ import annotations

from litestar import Controller, Response, get

from comfyui_api.api.schemas import HealthResponse, ReadyResponse
from comfyui_api.api.services import ServicesDependency
from comfyui_api.version import package_version


class HealthController(Controller):
    tags = ["health"]

    @get("/health", summary="Liveness: 200 once ComfyUI has started", sync_to_thread=False)
    def health(self, services: ServicesDependency) -> Response[HealthResponse]:
        started = services.instance.start_count > 0
        phase = services.instance.phase
        body = HealthResponse(
            status="healthy" if started else "starting",
            comfyui="simulator" if services.settings.comfy.using_simulator else phase,  # said loudly: no real images
            comfyui_phase=phase,
            comfyui_version=services.instance.features.version if started else None,
            version=package_version(),
        )
        return Response(body, status_code=200 if started else 503)

    @get("/ready", summary="Readiness: 200 only when a new job would be accepted", sync_to_thread=False)
    def ready(self, services: ServicesDependency) -> Response[ReadyResponse]:
        phase = services.readiness_phase()
        steps = services.startup.details() if services.startup is not None else {}
        body = ReadyResponse(
            status="ready" if phase == "ready" else "not_ready",
            phase=phase,
            queue_depth=services.registry.depth,
            max_queue_depth=services.settings.server.max_queue_depth,
            version=package_version(),
            models=steps.get("models"),
            warmup=steps.get("warmup"),
        )
        return Response(body, status_code=200 if phase == "ready" else 503)
