"""The server's start-up around ComfyUI: the manifest before ComfyUI starts; then, each time ComfyUI becomes ready,
the model loader folders, the after_start models, the workflow endpoints (the first time) and the warmup. Owns the
readiness phase these steps give, and the call to stop the server when one of them fails for good.

Reads no environment and serves no HTTP: the workflow endpoints come in through the `WorkflowLoader` callback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from comfyui_api.errors import ComfyApiError
from comfyui_api.jobs.runner import ComfyInstanceLike
from comfyui_api.jobs.warmup import Warmup, WarmupRunner
from comfyui_api.models.provisioner import ProvisionError
from comfyui_api.models.services import ModelServices

log = logging.getLogger(__name__)

WorkflowLoader = Callable[[str | None], Awaitable[int]]
"""`load(default_checkpoint) -> number of workflows served`; raises when WORKFLOW_DIR cannot be served."""

FatalCallback = Callable[[str], None]
"""`on_fatal(reason)`: the server cannot serve (the manifest failed, WARMUP_REQUIRED and the warmup failed...)."""


class StartupSequence:
    """Call `await before_comfy_starts()` before launching ComfyUI and register `on_comfy_ready` as ComfyUI's ready
    callback. `blocking_phase()` names what /ready still waits for, or None.

    Readiness is tied to ComfyUI's start count: the steps finished for start N do not count for start N+1, so a
    restarted ComfyUI is warmed up again before /ready answers 200.
    """

    def __init__(
        self,
        instance: ComfyInstanceLike,
        models: ModelServices,
        warmup: Warmup,
        runner: WarmupRunner,
        *,
        on_fatal: FatalCallback,
    ):
        self._instance = instance
        self._models = models
        self._warmup = warmup
        self._runner = runner
        self._on_fatal = on_fatal
        self._load_workflows: WorkflowLoader | None = None
        self._workflows_loaded = True
        self._provisioning = False
        self._ready_for_start = 0  # the ComfyUI start (its start_count) whose steps all finished
        self._failed = False
        self._round_lock = asyncio.Lock()

    @property
    def warmup(self) -> Warmup:
        return self._warmup

    def serve_workflows(self, load: WorkflowLoader) -> None:
        """Load the workflow endpoints with `load` once ComfyUI is first ready (its /object_info is needed)."""
        self._load_workflows = load
        self._workflows_loaded = False

    async def before_comfy_starts(self) -> bool:
        """Apply the manifest's before-start steps and read the warmup graph. False (after `on_fatal`) when the
        server cannot start."""
        self._provisioning = True
        try:
            await self._models.apply_manifest_before_start()
        except (ProvisionError, ComfyApiError, OSError) as exc:
            self._fail(f"the manifest could not be applied: {exc}")
            return False
        finally:
            self._provisioning = False
        await self._warmup.load()
        if self._warmup.exit_required:
            self._fail(f"WARMUP_REQUIRED is set and the warmup graph is unusable: {self._warmup.state().error}")
            return False
        return True

    async def on_comfy_ready(self) -> None:
        """The steps after each ComfyUI start. A restart while they run waits, then runs its own round."""
        async with self._round_lock:
            start = self._instance.start_count
            self._warmup.reset()
            await self._models.learn_loader_folders(self._instance.client)
            self._models.start_after_start()
            if self._models.blocks_ready:
                await self._models.wait_after_start()
            if not self._workflows_loaded and not await self._serve_workflows():
                return
            await self._warmup.run(self._runner)
            if self._warmup.exit_required:
                self._fail(f"WARMUP_REQUIRED is set and the warmup failed: {self._warmup.state().error}")
                return
            self._ready_for_start = start

    async def _serve_workflows(self) -> bool:
        assert self._load_workflows is not None
        try:
            count = await self._load_workflows(self._warmup.checkpoint_name)
        except ComfyApiError as exc:  # ComfyUI went away meanwhile: its next start tries again
            log.error("cannot load the workflow endpoints: %s", exc.message)
            return False
        except ValueError as exc:  # WorkflowLoadError: WORKFLOW_DIR holds something that cannot be served
            self._fail(str(exc))
            return False
        self._workflows_loaded = True
        log.info("serving %d workflow endpoint(s)", count)
        return True

    def blocking_phase(self) -> str | None:
        """What /ready waits for: "provisioning" (the manifest, before ComfyUI starts), then, once ComfyUI is ready,
        "models_pending", "loading_workflows", "warmup" or "warmup_failed"; "failed" after `on_fatal`. None when
        nothing (ComfyUI's own phase is the caller's to report)."""
        if self._failed:
            return "failed"
        if self._provisioning:
            return "provisioning"
        if not self._instance.is_ready:
            return None
        if self._models.blocks_ready:
            return "models_pending"
        if not self._workflows_loaded:
            return "loading_workflows"
        if self._warmup.phase == "failed":
            return "warmup_failed"
        if self._ready_for_start != self._instance.start_count:
            return "warmup" if self._warmup.enabled else "starting"
        return None

    def details(self) -> dict[str, Any]:
        """For the /ready body: the after_start models and the warmup, where configured."""
        found: dict[str, Any] = {}
        manifest = self._models.manifest
        if manifest is not None and manifest.after_start:
            found["models"] = self._models.after_start.to_dict()
        if self._warmup.enabled:
            state = self._warmup.state()
            found["warmup"] = {
                "phase": state.phase,
                "error": state.error,
                "duration_s": round(state.duration_s, 3) if state.duration_s is not None else None,
                "run_count": state.run_count,
            }
        return found

    def _fail(self, reason: str) -> None:
        self._failed = True
        log.critical("the server cannot serve: %s", reason)
        self._on_fatal(reason)
