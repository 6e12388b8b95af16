"""Applying a manifest on every start, idempotently: apt packages, pip requirements, custom nodes, then the
before_start models (awaited before ComfyUI starts); after_start models download in the background and report
through `AfterStartStatus` (/ready stays 503 while any is pending, unless READY_WAITS_FOR_MODELS=false).

Public surface:
    provisioner = Provisioner(manifest, comfy_home=..., cache=model_cache)
    reports = await provisioner.apply_before_start()     # raises ProvisionError naming the entry
    status = provisioner.start_after_start()              # AfterStartStatus: pending / done / failed
    status.blocks_ready(settings.models.ready_waits_for_after_start)
    await provisioner.aclose()

What is already there is not fetched again: installed apt packages are skipped (dpkg-query), pip skips satisfied
requirements itself, a git node already at the wanted commit (or present, with no ref) is skipped, a registry node
whose folder exists is skipped, a model file that exists (with the cached size, when the cache knows it) is skipped.
A branch ref is resolved against what was fetched last; pin a tag or a commit to follow upstream changes exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import shutil
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfyui_api.errors import ComfyApiError
from comfyui_api.models.cache import ModelCache
from comfyui_api.models.manifest import Manifest, ModelFile
from comfyui_api.models.nodes import NodeInstaller
from comfyui_api.models.system_packages import install_apt_packages, install_pip_requirements
from comfyui_api.models.urls import cache_url

log = logging.getLogger(__name__)


class ProvisionError(RuntimeError):
    """A manifest step failed; the message names the entry (`custom_nodes[1]: ...`)."""


@dataclass(frozen=True)
class StepReport:
    step: str  # "apt", "pip", "custom_nodes[0]", "models.before_start[2]"
    action: str  # "installed", "skipped", "downloaded", "placed"
    detail: str
    duration_s: float


@dataclass
class AfterStartStatus:
    """The after_start models: each entry is {"url", "local_path"} (+ "error" when failed)."""

    pending: list[dict[str, str]] = field(default_factory=list)
    done: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.pending

    def blocks_ready(self, ready_waits_for_after_start: bool) -> bool:
        return ready_waits_for_after_start and not self.finished

    def to_dict(self) -> dict[str, Any]:
        return {"pending": list(self.pending), "done": list(self.done), "failed": list(self.failed)}


@dataclass(frozen=True)
class ProvisionTimeouts:
    apt_s: float = 1800.0
    pip_s: float = 1800.0
    git_s: float = 600.0
    comfy_cli_s: float = 1800.0


class Provisioner:
    """`pip_cmd` is the pip that installs into ComfyUI's interpreter (default: this interpreter's pip);
    `comfy_cli` the comfy-cli executable (default: `comfy` on PATH, else registry nodes fail clearly)."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        comfy_home: Path,
        cache: ModelCache,
        pip_cmd: Sequence[str] = (sys.executable, "-m", "pip"),
        pip_extra_args: Sequence[str] = (),
        comfy_cli: str | None = None,
        timeouts: ProvisionTimeouts | None = None,
        max_parallel_downloads: int = 4,
    ):
        self.manifest = manifest
        self.cache = cache
        self._timeouts = timeouts or ProvisionTimeouts()
        self._pip_cmd = tuple(pip_cmd)
        self._pip_extra_args = tuple(pip_extra_args)
        self._nodes = NodeInstaller(
            comfy_home=comfy_home,
            pip_cmd=self._pip_cmd,
            pip_extra_args=self._pip_extra_args,
            comfy_cli=comfy_cli if comfy_cli is not None else shutil.which("comfy"),
            git_timeout_s=self._timeouts.git_s,
            pip_timeout_s=self._timeouts.pip_s,
            comfy_cli_timeout_s=self._timeouts.comfy_cli_s,
        )
        self._max_parallel = max(1, max_parallel_downloads)
        self.after_start = AfterStartStatus(pending=[_model_entry(m) for m in manifest.after_start])
        self._after_task: asyncio.Task[None] | None = None

    async def apply_before_start(self) -> list[StepReport]:
        """Everything ComfyUI needs before it starts. Raises ProvisionError on the first failing entry."""
        started = time.monotonic()
        reports: list[StepReport] = []
        if self.manifest.apt:
            reports.append(await self._step("apt", self._apt))
        if self.manifest.pip:
            reports.append(await self._step("pip", self._pip))
        for index, node in enumerate(self.manifest.custom_nodes):
            reports.append(await self._step(f"custom_nodes[{index}]", functools.partial(self._nodes.install, node)))
        reports.extend(await self._models(self.manifest.before_start))
        log.info("manifest applied before start in %.2fs (%d steps)", time.monotonic() - started, len(reports))
        return reports

    def start_after_start(self) -> AfterStartStatus:
        """Start the after_start downloads in the background (once); returns the live status."""
        if self._after_task is None and self.manifest.after_start:
            self._after_task = asyncio.create_task(self._run_after_start(), name="manifest-after-start")
        return self.after_start

    async def wait_after_start(self) -> AfterStartStatus:
        if self._after_task is not None:
            await asyncio.shield(self._after_task)
        return self.after_start

    async def aclose(self) -> None:
        if self._after_task is not None and not self._after_task.done():
            self._after_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._after_task

    # ---- steps ----

    async def _step(self, name: str, action: Callable[[], Awaitable[tuple[str, str]]]) -> StepReport:
        started = time.monotonic()
        try:
            verb, detail = await action()
        except Exception as exc:  # one manifest entry is a task boundary: report it by name, whatever failed
            message = exc.message if isinstance(exc, ComfyApiError) else str(exc) or type(exc).__name__
            log.error("manifest %s failed after %.2fs: %s", name, time.monotonic() - started, message)
            raise ProvisionError(f"{name}: {message}") from exc
        report = StepReport(name, verb, detail, time.monotonic() - started)
        log.info("manifest %s: %s %s (%.2fs)", name, verb, detail, report.duration_s)
        return report

    async def _apt(self) -> tuple[str, str]:
        installed = await install_apt_packages(self.manifest.apt, timeout_s=self._timeouts.apt_s)
        if not installed:
            return "skipped", f"{len(self.manifest.apt)} package(s) already installed"
        return "installed", ", ".join(installed)

    async def _pip(self) -> tuple[str, str]:
        await install_pip_requirements(
            self._pip_cmd, self.manifest.pip, extra_args=self._pip_extra_args, timeout_s=self._timeouts.pip_s
        )
        count = sum(1 for item in self.manifest.pip if not item.startswith("-"))
        return "installed", f"{count} requirement(s) installed or already satisfied"

    async def _models(self, models: Sequence[ModelFile]) -> list[StepReport]:
        limit = asyncio.Semaphore(self._max_parallel)

        async def one(model: ModelFile) -> StepReport:
            async with limit:
                return await self._step(model.entry, lambda: self._install_model(model))

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(model)) for model in models]
        except BaseExceptionGroup as failed:  # the first failing entry, as every other step reports it
            first = next((e for e in failed.exceptions if isinstance(e, ProvisionError)), failed.exceptions[0])
            raise first from None
        return [task.result() for task in tasks]

    async def _install_model(self, model: ModelFile) -> tuple[str, str]:
        await self.cache.open()
        cached = self.cache.lookup(model.url)
        present_size = await asyncio.to_thread(_file_size, model.local_path)
        if present_size is not None and (cached is None or cached.size_bytes == present_size):
            return "skipped", f"{model.local_path} is present"
        with self.cache.pin() as lease:
            fetched = await self.cache.fetch(model.url, lease=lease, persistent=True)
            placed = await self.cache.place(fetched, model.local_path, replace=True)
        verb = "placed" if cached is not None else "downloaded"
        return verb, f"{cache_url(model.url)} -> {placed} ({fetched.size_bytes} bytes)"

    async def _run_after_start(self) -> None:
        limit = asyncio.Semaphore(self._max_parallel)

        async def one(model: ModelFile) -> None:
            entry = _model_entry(model)
            async with limit:
                try:
                    await self._step(model.entry, lambda: self._install_model(model))
                except Exception as exc:  # task boundary: one failed model must not leave /ready waiting
                    self.after_start.failed.append({**entry, "error": str(exc)})
                else:
                    self.after_start.done.append(entry)
                finally:
                    self.after_start.pending.remove(entry)

        await asyncio.gather(*(one(model) for model in self.manifest.after_start))
        status = self.after_start
        log.info("after_start models finished: %d done, %d failed", len(status.done), len(status.failed))


def _model_entry(model: ModelFile) -> dict[str, str]:
    return {"url": cache_url(model.url), "local_path": str(model.local_path)}


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None
