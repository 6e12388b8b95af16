"""The runtime on an event loop of its own, in a thread, for front doors whose framework owns the main loop (the
runpod SDK runs its handler under `asyncio.run` for `--test_input`, in uvicorn for its local test API, and in its
job loop in production). ComfyUI starts with the process, not with the first job, and the handler awaits the
runtime's coroutines from whichever loop it runs on."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from comfyui_api.runtime import Runtime
from comfyui_api.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
_START_TIMEOUT_S = 60.0  # building the runtime: reading settings and the manifest, no network


class RuntimeThread:
    """`start()` builds and starts a Runtime on a new loop in a daemon thread; `call(coro)` runs a coroutine there
    and awaits it from the caller's loop (cancelling the caller cancels it); `stop()` drains and closes."""

    def __init__(self, settings: Settings):
        self._settings = settings
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfyui-api-runtime", daemon=True)
        self._runtime: Runtime | None = None
        self.fatal_exit_code: int | None = None

    @property
    def runtime(self) -> Runtime:
        assert self._runtime is not None, "start() first"
        return self._runtime

    def start(self) -> Runtime:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._build(), self._loop)
        self._runtime = future.result(timeout=_START_TIMEOUT_S)
        return self._runtime

    async def _build(self) -> Runtime:
        runtime = Runtime(self._settings, on_fatal=self._fatal)
        runtime.start()
        return runtime

    def _fatal(self, exit_code: int) -> None:
        self.fatal_exit_code = exit_code

    async def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the runtime's loop; await its result here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))

    def stop(self, grace_s: float) -> None:
        """Drain (running jobs get `grace_s`), close the runtime (ComfyUI stops), end the thread."""
        if self._runtime is None or not self._thread.is_alive():
            return
        runtime = self._runtime

        async def wind_down() -> None:
            await runtime.drain(grace_s)
            await runtime.close()

        try:
            asyncio.run_coroutine_threadsafe(wind_down(), self._loop).result(timeout=grace_s + 30.0)
        except Exception:  # shutdown boundary: log and go on ending the thread
            log.exception("the runtime did not close cleanly")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10.0)
        if not self._thread.is_alive():
            self._loop.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it is installed (as `serve` runs on, through uvicorn), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
