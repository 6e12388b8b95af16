"""The server commands: `serve` runs the HTTP server with uvicorn, `worker` the AMQP consumer with only the probes,
`runpod` the RunPod serverless worker, `simulator` the bundled ComfyUI simulator.

Signals: the first SIGTERM/SIGINT drains (no new jobs, /ready 503, in-flight jobs finish within SHUTDOWN_GRACE_S),
then stops ComfyUI and exits 0; a second one exits at once. ComfyUI gone for good -> exit 1. Bad settings -> exit 2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import runpy
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import uvicorn
from litestar import Litestar

from comfyui_api.app import create_app, runtime_of
from comfyui_api.http_limits import bounded_protocol
from comfyui_api.logs import configure_logging
from comfyui_api.models.manifest import ManifestError, load_manifest
from comfyui_api.settings import Settings, SettingsError, load_settings, with_env_file
from comfyui_api.simulator import INSTALL_HINT as SIMULATOR_INSTALL_HINT
from comfyui_api.simulator import missing_modules

log = logging.getLogger("comfyui_api")

SETTINGS_EXIT_CODE = 2
# After draining, uvicorn itself waits this long for responses still being written before it closes them.
_RESPONSE_FLUSH_S = 10.0


class GracefulServer(uvicorn.Server):
    """uvicorn, with a drain phase before shutdown and a settable exit code."""

    def __init__(self, config: uvicorn.Config, *, app: Litestar, grace_s: float):
        super().__init__(config)
        self.exit_code = 0
        self._app = app
        self._grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._signal_count = 0

    async def serve(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)  # type: ignore[arg-type]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's own handler, the signal is not re-raised after shutdown: a drained stop exits 0.
        self._signal_count += 1
        if self._loop is None:  # not serving yet: nothing to drain
            self.should_exit = True
        elif self._signal_count == 1:
            self._loop.call_soon_threadsafe(self._begin_drain, sig)
        elif self._signal_count == 2:
            self._loop.call_soon_threadsafe(self._end_drain)
        else:  # a third signal: do not even stop ComfyUI
            self.should_exit = self.force_exit = True

    def _begin_drain(self, sig: int) -> None:
        log.info("received %s: draining (send it again to stop waiting for jobs)", signal.Signals(sig).name)
        self._drain_task = asyncio.create_task(self._drain(), name="drain")

    def _end_drain(self) -> None:
        log.warning("second signal: cancelling the jobs still running")
        if self._drain_task is not None:
            self._drain_task.cancel()
        self._drain_task = asyncio.create_task(self._cancel_jobs(), name="cancel-jobs")

    async def _cancel_jobs(self) -> None:
        runtime = runtime_of(self._app)
        try:
            if runtime is not None:
                await runtime.cancel_jobs()
        finally:
            self.should_exit = True

    async def _drain(self) -> None:
        runtime = runtime_of(self._app)
        try:
            if runtime is not None:
                await runtime.drain(self._grace_s)
        finally:
            self.should_exit = True

    def fail(self, exit_code: int) -> None:
        """Stop the server because something it cannot run without is gone."""
        self.exit_code = exit_code
        self.should_exit = True


def _configure_logging(settings: Settings) -> None:
    configure_logging(settings.server.log_level, settings.server.log_format)
    if settings.env_file is not None:
        log.info("settings read from %s too (the environment wins over it)", settings.env_file)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_about_exposure(settings: Settings) -> None:
    server = settings.server
    if not server.api_keys and server.api_keys_file is None and not _is_loopback(server.host):
        log.warning(
            "No API key is set (API_KEYS / API_KEYS_FILE) and the server listens on %s, beyond this machine: anyone "
            "who can reach it can run workflows. Set API_KEYS for a public deployment.",
            server.host,
        )
    if settings.webhooks.secret is None:
        log.warning("WEBHOOK_SECRET is not set: webhook_v2 and system events are sent UNSIGNED")


def serve(settings: Settings, *, job_api: bool = True) -> int:
    """Run the server until SIGTERM; `job_api=False` (`comfyui-api worker`) answers only /health and /ready."""
    _configure_logging(settings)
    if settings.comfy.using_simulator:
        if missing := missing_modules():
            log.error(
                "No ComfyUI is configured (CMD, COMFYUI_URL and COMFY_HOME/main.py are all unset) and the bundled "
                "simulator cannot run without %s: %s, or set CMD or COMFY_HOME to run a real ComfyUI.",
                ", ".join(missing),
                SIMULATOR_INSTALL_HINT,
            )
            return SETTINGS_EXIT_CODE
        log.warning(
            "No ComfyUI is configured (CMD, COMFYUI_URL and COMFY_HOME/main.py are all unset): running the bundled "
            "ComfyUI simulator as CMD. Outputs are synthetic. Set CMD or COMFY_HOME to run a real ComfyUI."
        )
    _warn_about_exposure(settings)
    holder: list[GracefulServer] = []
    app = create_app(settings, on_fatal=lambda code: holder[0].fail(code), job_api=job_api)
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.server.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=int(_RESPONSE_FLUSH_S),
        http=bounded_protocol(settings.server),
        # JSON logs: uvicorn's own lines go through the root logger's JSON handler instead of its text ones.
        log_config=None
        if settings.server.log_format == "json"
        else uvicorn.config.LOGGING_CONFIG,  # header cap and read timeouts (comfyui_api/http_limits.py)
    )
    server = GracefulServer(config, app=app, grace_s=settings.server.shutdown_grace_s)
    holder.append(server)
    server.run()
    if server.exit_code == 0 and not server.started:
        return 1  # start-up failed (e.g. the port is taken); uvicorn logged why
    return server.exit_code


def settings_or_exit(environ: Mapping[str, str]) -> Settings | int:
    """The settings from `environ` over a `.env` file in the working directory, or the exit code after saying what
    is wrong."""
    try:
        merged, env_file = with_env_file(environ, Path.cwd())
        settings = dataclasses.replace(load_settings(merged), env_file=env_file)
        # A broken manifest is a configuration error: refuse it here, before anything starts.
        load_manifest(
            manifest_path=settings.models.manifest_path,
            manifest_json=settings.models.manifest_json,
            model_dir=settings.comfy.model_dir,
        )
    except (SettingsError, ManifestError) as exc:
        print(f"comfyui-api: invalid settings: {exc}", file=sys.stderr)
        return SETTINGS_EXIT_CODE
    return settings


def run_runpod_worker(sdk_argv: Sequence[str]) -> int:
    settings = settings_or_exit(os.environ)
    if isinstance(settings, int):
        return settings
    _configure_logging(settings)
    from comfyui_api.runpod.worker import main as worker_main  # the runpod SDK only for this command

    return worker_main(settings, sdk_argv)


def run_simulator(argv: Sequence[str]) -> int:
    sys.argv = ["comfyui_api.simulator", *argv]
    runpy.run_module("comfyui_api.simulator", run_name="__main__", alter_sys=True)
    return 0


def serve_command(environ: Mapping[str, str], *, worker: bool) -> int:
    """`serve` / `worker` after argument parsing: settings from `environ`, then the server."""
    settings = settings_or_exit(environ)
    if isinstance(settings, int):
        return settings
    if worker and not settings.amqp.enabled:
        print("comfyui-api worker: set AMQP_URL (or AMQP_HOST) to say which broker to take tasks from", file=sys.stderr)
        return SETTINGS_EXIT_CODE
    return serve(settings, job_api=not worker)
