"""GET /models: the model folders ComfyUI knows and the files in each, as ComfyUI itself lists them."""

from __future__ import annotations

import asyncio

from litestar import Controller, get

from comfyui_api.api.schemas import ERROR_RESPONSES
from comfyui_api.api.services import ServicesDependency
from comfyui_api.errors import ComfyUnavailable

_PARALLEL_LISTINGS = 8  # folder listings asked of ComfyUI at once (it has ~30 folders)


class ModelsController(Controller):
    path = "/models"
    tags = ["models"]

    @get(summary="Model folders and their files", responses={503: ERROR_RESPONSES[503]})
    async def list_models(self, services: ServicesDependency) -> dict[str, list[str]]:
        if not services.instance.is_ready:
            raise ComfyUnavailable(f"ComfyUI is not ready (phase: {services.instance.phase})")
        client = services.instance.client
        folders = await client.list_models()
        slots = asyncio.Semaphore(_PARALLEL_LISTINGS)

        async def listing(folder: str) -> list[str]:
            async with slots:
                return await client.list_models(folder)

        files = await asyncio.gather(*(listing(folder) for folder in folders))
        return dict(zip(folders, files, strict=True))
