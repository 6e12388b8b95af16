"""The Simulator: one object holding a simulated ComfyUI's state, its execution thread and its HTTP app.

Owns start-up (folders, the simulator checkpoint, the temp folder clean-up), the worker loop and shutdown.
Everything lives on this object; two simulators in one process do not share anything.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any

from aiohttp import web

from comfyui_api.simulator.config import SimulatorConfig
from comfyui_api.simulator.executor import PromptExecutor
from comfyui_api.simulator.hub import SocketHub
from comfyui_api.simulator.nodes import build_registry
from comfyui_api.simulator.nodes.outputs import write_safetensors
from comfyui_api.simulator.paths import Folders
from comfyui_api.simulator.prompt_queue import ExecutionStatus, PromptQueue
from comfyui_api.simulator.validation import PromptValidator

log = logging.getLogger("comfyui_api.simulator")

SIMULATOR_CHECKPOINT = "sim-sd15.safetensors"
_WORKER_POLL_S = 0.5  # how often an idle worker looks at the stop flag


class LogBuffer(logging.Handler):
    """The last lines logged, for /internal/logs (ComfyUI keeps 300)."""

    def __init__(self, capacity: int = 300) -> None:
        super().__init__()
        self.entries: deque[dict[str, str]] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append({"t": datetime.now().isoformat(), "m": self.format(record) + "\n"})


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.folders = Folders.create(
            config.base_dir, config.input_dir, config.output_dir, config.temp_dir, config.user_dir, config.models_dir
        )
        self.registry = build_registry(modern=config.profile.v3_object_info)
        self.hub = SocketHub(config.server_features())
        self.queue = PromptQueue(on_change=self._queue_changed)
        self.executor = PromptExecutor(self.registry, self.folders, config, self.hub)
        self.validator = PromptValidator(self.registry, self.folders, config)
        self.number = 0
        self.logs = LogBuffer()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._publisher: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.queue.remaining()}}

    def _queue_changed(self) -> None:
        self.hub.send_sync("status", {"status": self.queue_info()})

    def prepare_folders(self) -> None:
        """Create the folders, empty the temp folder (ComfyUI does at start) and provide the sim checkpoint."""
        shutil.rmtree(self.folders.temp_dir, ignore_errors=True)
        self.folders.make_dirs()
        checkpoint = self.folders.models_dir / "checkpoints" / SIMULATOR_CHECKPOINT
        if not checkpoint.exists():
            try:
                import numpy as np

                write_safetensors(
                    checkpoint,
                    {"sim": np.zeros((1,), dtype=np.float32)},
                    {"note": "comfyui-api simulator checkpoint; not a real model"},
                )
            except OSError as err:
                log.warning("could not write the simulator checkpoint %s: %s", checkpoint, err)

    async def start(self) -> list[str]:
        """Bind the hub to the running loop, start the worker and serve; returns the URLs listened on."""
        from comfyui_api.simulator.app import create_app

        self.hub.bind(asyncio.get_running_loop())
        self._publisher = asyncio.create_task(self.hub.publish_loop())
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="simulator-worker", daemon=True)
        self._worker.start()
        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        urls = []
        log.info("Starting server\n")
        for address in self.config.listen.split(","):
            site = web.TCPSite(self._runner, address, self.config.port)
            await site.start()
            shown = f"[{address}]" if ":" in address else address
            urls.append(f"http://{shown}:{self.config.port}")
            log.info("To see the GUI go to: %s", urls[-1])
        return urls

    def bound_port(self) -> int:
        """The port actually listened on (useful with --port 0)."""
        assert self._runner is not None
        for site in self._runner.sites:
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                return int(server.sockets[0].getsockname()[1])
        return self.config.port

    async def stop(self) -> None:
        self._stop.set()
        self.executor.request_interrupt()  # a long sampler run must not hold shutdown up
        self.queue.wake()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._publisher is not None:
            self._publisher.cancel()
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join, 5.0)

    def _work(self) -> None:
        while not self._stop.is_set():
            got = self.queue.get(timeout_s=_WORKER_POLL_S)
            if got is not None:
                self._run_item(*got)
            flags = self.queue.take_flags()
            if flags.get("free_memory", False):
                self.executor.cache.clear()

    def _run_item(self, item: tuple[Any, ...], item_id: int) -> None:
        started = time.perf_counter()
        prompt_id = item[1]
        try:
            self.executor.execute(item[2], prompt_id, item[3], item[4])
        except Exception:  # the execution thread must survive anything a prompt does
            log.exception("prompt %s failed unexpectedly", prompt_id)
            self.executor.success = False
            self.executor.history_result = {"outputs": {}, "meta": {}}
        status = ExecutionStatus(
            "success" if self.executor.success else "error",
            self.executor.success,
            [list(m) for m in self.executor.status_messages],
        )
        self.queue.task_done(item_id, self.executor.history_result, status)
        if self.hub.client_id is not None:
            self.hub.send_sync("executing", {"node": None, "prompt_id": prompt_id}, self.hub.client_id)
        log.info("Prompt executed in %.2f seconds", time.perf_counter() - started)
