"""POST /interrupt: stop one job. Pending in ComfyUI's queue -> removed; running -> interrupted; unknown -> 404."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import JSONBody

from comfyui_api.api.schemas import ERROR_RESPONSES, InterruptRequest, InterruptResponse
from comfyui_api.api.services import ServicesDependency


class InterruptController(Controller):
    path = "/interrupt"
    tags = ["prompts"]

    @post(
        status_code=200,
        summary="Stop a queued or running job",
        responses={400: ERROR_RESPONSES[400], 404: ERROR_RESPONSES[404]},
    )
    async def interrupt(self, data: JSONBody[InterruptRequest], services: ServicesDependency) -> InterruptResponse:
        outcome = await services.runner.interrupt(data.id)
        return InterruptResponse(id=data.id, status=outcome)
