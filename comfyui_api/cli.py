"""The `comfyui-api` command (argparse): `serve` (the default) runs the HTTP server with uvicorn; `simulator` runs
the bundled ComfyUI simulator with the rest of the command line. `--help` lists every environment variable,
`--version` prints the version, and an unknown argument exits 2 (never a silently started server).

Signals: the first SIGTERM/SIGINT drains (no new jobs, /ready 503, in-flight jobs finish within SHUTDOWN_GRACE_S),
then stops ComfyUI and exits 0; a second one exits at once. ComfyUI gone for good -> exit 1. Bad settings -> exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import runpy
import signal
import sys
from collections.abc import Mapping, Sequence
from types import FrameType

import uvicorn
from litestar import Litestar

from comfyui_api.app import create_app, runtime_of
from comfyui_api.http_limits import bounded_protocol
from comfyui_api.models.manifest import ManifestError, load_manifest
from comfyui_api.settings import VARIABLES, Settings, SettingsError, load_settings
from comfyui_api.version import package_version

log = logging.getLogger("comfyui_api")

SETTINGS_EXIT_CODE = 2
# After draining, uvicorn itself waits this long for responses still being written before it closes them.
_RESPONSE_FLUSH_S = 10.0
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    logging.basicConfig(level=settings.server.log_level, format=_LOG_FORMAT, stream=sys.stderr)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # one line per request


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
        http=bounded_protocol(settings.server),  # header cap and read timeouts (comfyui_api/http_limits.py)
    )
    server = GracefulServer(config, app=app, grace_s=settings.server.shutdown_grace_s)
    holder.append(server)
    server.run()
    if server.exit_code == 0 and not server.started:
        return 1  # start-up failed (e.g. the port is taken); uvicorn logged why
    return server.exit_code


def _settings_or_exit(environ: Mapping[str, str]) -> Settings | int:
    try:
        settings = load_settings(environ)
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
    settings = _settings_or_exit(os.environ)
    if isinstance(settings, int):
        return settings
    _configure_logging(settings)
    from comfyui_api.runpod.worker import main as worker_main  # the runpod SDK only for this command

    return worker_main(settings, sdk_argv)


def run_simulator(argv: Sequence[str]) -> int:
    sys.argv = ["comfyui_api.simulator", *argv]
    runpy.run_module("comfyui_api.simulator", run_name="__main__", alter_sys=True)
    return 0


def _environment_help() -> str:
    width = max(len(name) for name, _, _ in VARIABLES)
    lines = ["configuration (environment variables, read once at start; a bad value exits 2 naming it):"]
    for name, default, meaning in VARIABLES:
        shown = f" [default: {default}]" if default else ""
        lines.append(f"  {name.ljust(width)}  {meaning}{shown}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comfyui-api",
        description="Run any ComfyUI workflow over HTTP. Without a command, `serve`.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"comfyui-api {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve",
        help="run the HTTP server (and ComfyUI, or the simulator when none is configured)",
        description="Run the HTTP server; launches ComfyUI (or attaches to COMFYUI_URL).",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker_parser = commands.add_parser(
        "worker",
        help="take tasks from RabbitMQ only (AMQP_URL or AMQP_HOST required); HTTP answers just /health and /ready",
        description="Run the AMQP consumer without the HTTP job API; /health and /ready stay up for probes.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for listening in (serve_parser, worker_parser):
        listening.add_argument("--host", help="address to listen on (overrides HOST)")
        listening.add_argument("--port", type=int, help="port to listen on (overrides PORT)")
    commands.add_parser(
        "runpod",
        help="run as a RunPod serverless worker (the runpod SDK's flags pass through: --test_input, --rp_serve_api)",
        add_help=False,
    )
    commands.add_parser(
        "simulator",
        help="run the bundled ComfyUI simulator (ComfyUI's flags, plus --comfyui-version and --step-seconds)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "simulator":  # every later argument is the simulator's own (ComfyUI's flags)
        return run_simulator(args[1:])
    if args and args[0] == "runpod":  # every later argument is the runpod SDK's own
        return run_runpod_worker(args[1:])
    if not args or (args[0] not in ("serve", "-h", "--help", "--version") and args[0].startswith("-")):
        args.insert(0, "serve")  # compat: `comfyui-api` alone serves, as before subcommands
    options = build_parser().parse_args(args)  # an unknown command or flag exits 2 with a usage line
    environ = dict(os.environ)
    if options.host is not None:
        environ["HOST"] = options.host
    if options.port is not None:
        environ["PORT"] = str(options.port)
    settings = _settings_or_exit(environ)
    if isinstance(settings, int):
        return settings
    if options.command == "worker":
        if not settings.amqp.enabled:
            print(
                "comfyui-api worker: set AMQP_URL (or AMQP_HOST) to say which broker to take tasks from",
                file=sys.stderr,
            )
            return SETTINGS_EXIT_CODE
        return serve(settings, job_api=False)
    return serve(settings)
