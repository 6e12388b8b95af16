"""One ComfyUI as a service: its HTTP client, its event stream, its process (when launched here) and the
supervisor that restarts it (ALWAYS_RESTART_COMFYUI) or declares it fatal. All state lives on the instance.

Knows nothing about jobs, webhooks or HTTP routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

import httpx

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.comfy.events import ComfyEventStream
from comfyui_api.comfy.features import ComfyFeatures, detect_features
from comfyui_api.comfy.messages import ComfyExited, ComfyStalled
from comfyui_api.comfy.process import ComfyProcess
from comfyui_api.errors import ComfyUnavailable
from comfyui_api.settings import ComfySettings

logger = logging.getLogger(__name__)

Phase = Literal["starting", "ready", "stalled", "restarting", "stopped", "failed"]
ReadyCallback = Callable[[], Awaitable[None] | None]
FatalCallback = Callable[[int | None], Awaitable[None] | None]

# A relaunch that fails to become ready this many times in a row is fatal (a crash loop helps nobody).
MAX_RESTART_FAILURES = 3
RESTART_FAILURE_GRACE_S = 5.0
PORT_CHECK_TIMEOUT_S = 2.0  # a listener on loopback answers in microseconds


class ComfyInstance:
    """Start with `await start()`, stop with `await stop()`; started once per instance.

    `on_ready` callbacks run (in background tasks) every time ComfyUI becomes ready, including the first time;
    `on_fatal(returncode)` runs when ComfyUI is gone for good (exited without ALWAYS_RESTART_COMFYUI, or every
    relaunch failed). With `settings.url` set no process is launched: the instance attaches to that ComfyUI.
    """

    def __init__(
        self,
        settings: ComfySettings,
        *,
        on_ready: ReadyCallback | None = None,
        on_fatal: FatalCallback | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.settings = settings
        self._client = ComfyClient(settings.base_url, timeout_s=settings.http_timeout_s, transport=transport)
        self._client_id = uuid.uuid4().hex
        self._events = ComfyEventStream(
            self.ws_url,
            self._client_id,
            idle_timeout_s=settings.ws_idle_timeout_s,
            max_backoff_s=settings.ws_reconnect_delay_s,
            give_up_after=settings.ws_reconnect_attempts,
            trace=settings.ws_trace,
        )
        self._process: ComfyProcess | None = None
        self._phase: Phase = "starting"
        self._ready = asyncio.Event()
        self._ready_callbacks: list[ReadyCallback] = [on_ready] if on_ready else []
        self.on_fatal = on_fatal
        self._supervisor: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._callback_tasks: set[asyncio.Task[None]] = set()
        self._fatal_tasks: set[asyncio.Task[None]] = set()
        self._start_count = 0
        self._stopping = False
        self._features = ComfyFeatures()

    # -- public surface ----------------------------------------------------------------------------------------

    @property
    def client(self) -> ComfyClient:
        return self._client

    @property
    def events(self) -> ComfyEventStream:
        return self._events

    @property
    def process(self) -> ComfyProcess | None:
        """The current ComfyUI process; None in attach mode or before start()."""
        return self._process

    @property
    def is_ready(self) -> bool:
        return self._phase == "ready"

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def client_id(self) -> str:
        """The websocket clientId; pass it as client_id when queueing so the frames reach our socket."""
        return self._client_id

    @property
    def features(self) -> ComfyFeatures:
        """What the running ComfyUI can do (version, output classes, jobs API); learnt at each start."""
        return self._features

    @property
    def start_count(self) -> int:
        """How many times ComfyUI became ready (1 after start, +1 per successful restart)."""
        return self._start_count

    @property
    def ws_url(self) -> str:
        scheme, _, rest = self.settings.base_url.partition("://")
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/ws"

    @property
    def launches_process(self) -> bool:
        return bool(self.settings.cmd) and not self.settings.url

    def add_ready_callback(self, callback: ReadyCallback) -> None:
        self._ready_callbacks.append(callback)

    async def wait_ready(self, timeout_s: float) -> bool:
        """Wait until ComfyUI is ready; False after timeout_s."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def start(self) -> None:
        """Launch (unless attaching), wait until ComfyUI answers, connect the event stream.

        Raises ComfyUnavailable (with ComfyUI's last output lines) when it exits or never answers.
        """
        self._stopping = False
        self._phase = "starting"
        try:
            await self._bring_up()
        except ComfyUnavailable:
            self._phase = "failed"
            if self._process is not None:
                await self._process.stop(RESTART_FAILURE_GRACE_S)
            raise
        await self._learn_features()
        await self._events.start()
        self._become_ready()
        if self._process is not None:
            self._supervisor = asyncio.create_task(self._supervise(), name="comfyui-supervisor")
        if self.settings.stall_timeout_s > 0:
            self._watchdog = asyncio.create_task(self._watch_for_stalls(), name="comfyui-stall-watchdog")

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop supervising, close the event stream, SIGTERM (then SIGKILL) ComfyUI, close the HTTP client."""
        self._stopping = True
        self._ready.clear()
        current = asyncio.current_task()
        tasks = [
            t for t in (self._supervisor, self._watchdog, *self._callback_tasks) if t is not None and t is not current
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = self._watchdog = None
        await self._events.stop()
        if self._process is not None:
            await self._process.stop(grace_s)
        await self._client.aclose()
        self._phase = "stopped"

    # -- internals -------------------------------------------------------------------------------------------------

    async def _bring_up(self) -> None:
        settings = self.settings
        interval_s, tries = settings.startup_check_interval_s, settings.startup_check_max_tries
        if self.launches_process:
            if await self._port_taken():
                raise ComfyUnavailable(
                    f"COMFYUI_PORT_HOST {settings.port} on {settings.direct_address} is already in use by another "
                    "process (a ComfyUI left over from an earlier run?): it cannot be ours. Stop it, choose another "
                    "COMFYUI_PORT_HOST, or attach to it with COMFYUI_URL."
                )
            if settings.using_simulator:
                settings.home.mkdir(parents=True, exist_ok=True)  # its working folder, under COMFYUI_API_HOME
            self._process = ComfyProcess(settings.cmd, settings.home)
            await self._process.start()
            await self._process.wait_ready(self._client, interval_s, tries)
            return
        for _ in range(tries):
            if await self._client.is_responding():
                return
            await asyncio.sleep(interval_s)
        raise ComfyUnavailable(
            f"ComfyUI at {settings.base_url} did not answer within {tries} checks {interval_s:g}s apart"
        )

    async def _learn_features(self) -> None:
        self._features = await detect_features(self._client)
        logger.info("%s", self._features.describe())

    async def _watch_for_stalls(self) -> None:
        """COMFYUI_STALL_TIMEOUT_S: ComfyUI is stalled when it does not answer HTTP, or when work is queued and no
        frame came for that long (a dead worker thread, a hung GPU call). Jobs waiting on it fail at once, /ready says
        "stalled", and with ALWAYS_RESTART_COMFYUI a ComfyUI we launched is killed so the supervisor relaunches it."""
        limit_s = self.settings.stall_timeout_s
        interval_s = min(30.0, max(0.25, limit_s / 4))
        while not self._stopping:
            await asyncio.sleep(interval_s)
            if self._phase not in ("ready", "stalled"):
                continue  # starting or restarting: the supervisor's business
            try:
                reason = await self._stall_reason(limit_s)
            except Exception:  # task boundary: the watchdog must outlive a surprise in one check
                logger.exception("the stall check failed")
                continue
            if reason is None and self._phase == "stalled":
                logger.warning("ComfyUI moves again")
                self._phase = "ready"
                self._ready.set()
            elif reason is not None and self._phase == "ready":
                self._stalled(reason)

    async def _stall_reason(self, limit_s: float) -> str | None:
        timeout_s = self.settings.http_timeout_s
        try:
            remaining = await self._client.queue_remaining(timeout_s)
        except ComfyUnavailable:
            return f"it did not answer GET /prompt within {timeout_s:g}s (COMFYUI_HTTP_TIMEOUT_S)"
        quiet_s = self._events.quiet_s()
        # Frames of other clients' prompts never reach our socket: only a wait on one of ours can count as a stall.
        if remaining > 0 and self._events.watching and self._events.connected and quiet_s > limit_s:
            return (
                f"{remaining} prompt(s) queued or running and no websocket frame for {quiet_s:.0f}s "
                f"(COMFYUI_STALL_TIMEOUT_S={limit_s:g})"
            )
        return None

    def _stalled(self, reason: str) -> None:
        self._phase = "stalled"
        self._ready.clear()
        logger.error("ComfyUI is stalled: %s", reason)
        self._events.publish_stream_event(ComfyStalled(self._events.quiet_s(), reason))
        if self._process is not None and self.settings.always_restart:
            logger.error("killing the stalled ComfyUI so that it is relaunched (ALWAYS_RESTART_COMFYUI)")
            self._process.kill_group()

    async def _port_taken(self) -> bool:
        """Whether something already listens where the ComfyUI we launch must listen (never taken for ours)."""
        try:
            async with asyncio.timeout(PORT_CHECK_TIMEOUT_S):
                _, writer = await asyncio.open_connection(self.settings.direct_address, self.settings.port)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _become_ready(self) -> None:
        self._start_count += 1
        self._phase = "ready"
        self._ready.set()
        logger.info("ComfyUI is ready at %s (start %d)", self.settings.base_url, self._start_count)
        for callback in self._ready_callbacks:
            task = asyncio.create_task(self._call(callback, "on_ready"), name="comfyui-on-ready")
            self._callback_tasks.add(task)
            task.add_done_callback(self._callback_tasks.discard)

    async def _call(self, callback: Callable[..., Awaitable[None] | None], what: str, *args: object) -> None:
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:  # task boundary: a failing callback must not take the supervisor down
            logger.exception("%s callback failed", what)

    async def _supervise(self) -> None:
        try:
            while not self._stopping and self._process is not None:
                returncode = await self._process.wait_exit()
                if self._stopping:
                    return
                if not await self._recover(returncode):
                    return
        except Exception:  # task boundary: an unexpected error here means nobody watches ComfyUI any more
            logger.exception("ComfyUI supervisor failed")
            self._fatal(None)

    async def _recover(self, returncode: int) -> bool:
        """ComfyUI exited: tell everyone at once, then relaunch or give up. True when it is ready again."""
        assert self._process is not None
        logger.error("ComfyUI exited unexpectedly with code %s", returncode)
        self._ready.clear()
        self._phase = "restarting" if self.settings.always_restart else "failed"
        self._events.publish_stream_event(ComfyExited(returncode))
        self._process.kill_group()
        if not self.settings.always_restart:
            self._fatal(returncode)
            return False
        failures = 0
        while True:
            try:
                await self._bring_up()
                break
            except ComfyUnavailable as exc:
                failures += 1
                logger.error("ComfyUI relaunch %d/%d failed: %s", failures, MAX_RESTART_FAILURES, exc)
                await self._process.stop(RESTART_FAILURE_GRACE_S)
                if failures >= MAX_RESTART_FAILURES:
                    self._fatal(self._process.returncode)
                    return False
                await asyncio.sleep(min(2.0**failures, 30.0))
        await self._learn_features()
        self._events.reconnect_now()
        self._become_ready()
        return True

    def _fatal(self, returncode: int | None) -> None:
        self._phase = "failed"
        self._ready.clear()
        logger.critical("ComfyUI is gone (exit code %s) and will not be restarted", returncode)
        if self.on_fatal is not None:
            # Its own task, not cancelled by stop(): on_fatal may well call stop() itself.
            task = asyncio.create_task(self._call(self.on_fatal, "on_fatal", returncode), name="comfyui-on-fatal")
            self._fatal_tasks.add(task)
            task.add_done_callback(self._fatal_tasks.discard)
