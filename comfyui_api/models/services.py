"""The model subsystem as one unit, built from settings: cache, URL resolver, named downloads and the manifest's
provisioner. The app's lifespan builds it, drives its start-up steps and closes it; nothing else reads settings.

    models = ModelServices.from_settings(settings.models, settings.comfy, downloader=..., on_event=...)
    await models.apply_manifest_before_start()      # before ComfyUI starts; ProvisionError / ManifestError
    ...ComfyUI is ready (each time):
    await models.learn_loader_folders(instance.client)
    models.start_after_start()                       # background downloads; see models.after_start
    await models.wait_after_start()                  # when /ready should wait for them (models.blocks_ready)
    ...per job: graph, lease = await models.resolver.resolve_model_urls(graph, credentials); finally lease.release()
    ...POST /download: app.state[MODEL_LIBRARY_STATE_KEY] = models.library
    await models.aclose()
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comfyui_api.models.cache import EventCallback, ModelCache
from comfyui_api.models.download import AccessCheck, Downloader
from comfyui_api.models.library import DEFAULT_URL_SCHEMES, ModelLibrary, UrlCheck
from comfyui_api.models.loaders import ModelCatalog, ModelResolver, discover_loader_folders
from comfyui_api.models.manifest import Manifest, load_manifest
from comfyui_api.models.provisioner import AfterStartStatus, Provisioner, StepReport
from comfyui_api.settings import ComfySettings, ModelSettings


@dataclass
class ModelServices:
    cache: ModelCache
    resolver: ModelResolver
    library: ModelLibrary
    manifest: Manifest | None
    provisioner: Provisioner | None
    ready_waits_for_after_start: bool = True

    @classmethod
    def from_settings(
        cls,
        models: ModelSettings,
        comfy: ComfySettings,
        *,
        downloader: Downloader | None = None,
        access_check: AccessCheck | None = None,
        on_event: EventCallback | None = None,
        url_schemes: frozenset[str] = DEFAULT_URL_SCHEMES,
        max_parallel_downloads: int = 4,
        url_check: UrlCheck | None = None,
    ) -> ModelServices:
        """Reads the manifest (raises ManifestError naming MANIFEST/MANIFEST_JSON and the entry); no I/O besides.
        `downloader` defaults to plain http(s); pass the storage registry's to serve s3://, Azure and HF URLs."""
        manifest = load_manifest(
            manifest_path=models.manifest_path, manifest_json=models.manifest_json, model_dir=comfy.model_dir
        )
        cache = ModelCache(
            models.cache_dir,
            downloader=downloader,
            access_check=access_check,
            max_size_bytes=models.lru_cache_size_bytes,
            on_event=on_event,
            download_timeout_s=models.download_timeout_s,
        )
        provisioner = None
        if manifest is not None and not manifest.is_empty:
            provisioner = Provisioner(
                manifest,
                comfy_home=comfy.home,
                cache=cache,
                pip_cmd=pip_command_for(comfy.cmd),
                max_parallel_downloads=max_parallel_downloads,
            )
        return cls(
            cache=cache,
            resolver=ModelResolver(cache, comfy.model_dir, max_parallel=max_parallel_downloads),
            library=ModelLibrary(cache, comfy.model_dir, url_schemes=url_schemes, url_check=url_check),
            manifest=manifest,
            provisioner=provisioner,
            ready_waits_for_after_start=models.ready_waits_for_after_start,
        )

    async def apply_manifest_before_start(self) -> list[StepReport]:
        await self.cache.open()
        if self.provisioner is None:
            return []
        return await self.provisioner.apply_before_start()

    def start_after_start(self) -> AfterStartStatus:
        if self.provisioner is None:
            return AfterStartStatus()
        return self.provisioner.start_after_start()

    async def wait_after_start(self) -> AfterStartStatus:
        """Until the after_start downloads started by `start_after_start` have all finished (or failed)."""
        if self.provisioner is None:
            return AfterStartStatus()
        return await self.provisioner.wait_after_start()

    @property
    def after_start(self) -> AfterStartStatus:
        return self.provisioner.after_start if self.provisioner is not None else AfterStartStatus()

    @property
    def blocks_ready(self) -> bool:
        """True while after_start models are pending and READY_WAITS_FOR_MODELS is on."""
        return self.after_start.blocks_ready(self.ready_waits_for_after_start)

    async def learn_loader_folders(self, catalog: ModelCatalog) -> None:
        """Learn (class, input) -> folder and the model types from ComfyUI; keeps the built-in table on failure."""
        folders = await discover_loader_folders(catalog)
        self.resolver.folders = folders
        self.library.folders = folders.folders

    async def aclose(self) -> None:
        if self.provisioner is not None:
            await self.provisioner.aclose()
        await self.library.aclose()
        await self.cache.aclose()


def pip_command_for(comfy_cmd: Sequence[str]) -> tuple[str, ...]:
    """The pip of the interpreter that runs ComfyUI (CMD's first word when it is a python), else this one's."""
    if comfy_cmd and Path(comfy_cmd[0]).name.startswith("python"):
        return (comfy_cmd[0], "-m", "pip")
    return (sys.executable, "-m", "pip")
