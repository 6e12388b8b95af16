"""`python -m comfyui_api.simulator [ComfyUI flags]`: run the simulated ComfyUI until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from typing import TYPE_CHECKING

from comfyui_api.simulator import INSTALL_HINT, missing_modules
from comfyui_api.simulator.config import SimulatorConfig, parse_config

if TYPE_CHECKING:  # imported when it runs: without its extra the simulator says what to install instead
    from comfyui_api.simulator.simulator import Simulator


def _log_startup(config: SimulatorConfig, argv: list[str]) -> None:
    log = logging.getLogger("comfyui_api.simulator")
    given = " ".join(argv)
    for flag, label, path in (
        ("--output-directory", "output", config.output_dir),
        ("--input-directory", "input", config.input_dir),
        ("--user-directory", "user", config.user_dir),
    ):
        if flag in given:
            log.info("Setting %s directory to: %s", label, path)
    log.info("Python version: %s", sys.version)
    log.info("ComfyUI version: %s (comfyui-api simulator)", config.profile.version)
    if "--temp-directory" in given:
        log.info("Setting temp directory to: %s", config.temp_dir)
    log.info("Models directory: %s", config.models_dir)


async def _serve(sim: Simulator) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    await sim.start()
    try:
        await stop.wait()
    finally:
        logging.getLogger("comfyui_api.simulator").info("\nStopped server")
        await sim.stop()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    config = parse_config(args)
    if missing := missing_modules():
        raise SystemExit(f"the ComfyUI simulator needs {', '.join(missing)}: {INSTALL_HINT}")
    from comfyui_api.simulator.simulator import Simulator

    sim = Simulator(config)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("comfyui_api.simulator").addHandler(sim.logs)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    _log_startup(config, args)
    sim.prepare_folders()
    try:
        asyncio.run(_serve(sim))
    finally:
        shutil.rmtree(config.temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
