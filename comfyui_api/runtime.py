"""The composition root: `Runtime.from_settings(settings)` builds every service in dependency order (ComfyUI
instance, storage, models, stager, collector, runner, job store and service, webhooks, system events, start-up
steps), starts them, drains them and closes them, and says whether the server is ready.

No HTTP import: the web app (`app.py`) and any other front door take a Runtime. Reads no environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx

from comfyui_api.comfy.instance import ComfyInstance
from comfyui_api.delivery.job_webhooks import JobWebhooks
from comfyui_api.delivery.sender import USER_AGENT
from comfyui_api.delivery.system_events import SystemEventPublisher, SystemEventSink
from comfyui_api.delivery.system_feed import ComfyEventFeed
from comfyui_api.delivery.webhooks import WebhookDelivery
from comfyui_api.errors import ComfyUnavailable
from comfyui_api.jobs.model import JobStatus
from comfyui_api.jobs.output_delivery import OutputDelivery
from comfyui_api.jobs.outputs import OutputCollector
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.remote_inputs import RegistryInputSource
from comfyui_api.jobs.runner import ComfyInstanceLike, JobRunner
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.sqlite_store import SqliteJobStore
from comfyui_api.jobs.staging import InputStager
from comfyui_api.jobs.store import MemoryJobStore, StoreLimits
from comfyui_api.jobs.warmup import Warmup
from comfyui_api.metrics import ServerMetrics
from comfyui_api.models.download import storage_downloader
from comfyui_api.models.services import ModelServices
from comfyui_api.settings import Settings
from comfyui_api.startup import StartupSequence
from comfyui_api.storage.base import StorageEvent
from comfyui_api.storage.outbound import Endpoint, OutboundGuard
from comfyui_api.storage.registry import StorageRegistry
from comfyui_api.telemetry import job_tracer
from comfyui_api.workflows.ui_conversion import UiWorkflows

log = logging.getLogger(__name__)

FatalHandler = Callable[[int], None]
FATAL_EXIT_CODE = 1
_DOWNLOAD_CONNECT_TIMEOUT_S = 10.0
_CANCEL_WAIT_S = 5.0  # cancelled jobs only withdraw their prompt from ComfyUI; that takes milliseconds
_COMFY_STOP_GRACE_S = 10.0  # SIGTERM to ComfyUI, then SIGKILL: jobs have been drained by then
_DELIVERY_CLOSE_S = 10.0  # webhooks still pending at shutdown (jobs were drained first) get this long
_SYSTEM_EVENTS_CLOSE_S = 2.0  # what is still buffered at shutdown is status chatter: not worth holding the exit


def outbound_guard(settings: Settings) -> OutboundGuard:
    """The guard for URLs that come from requests. The origins of URLs the operator configured are trusted; ComfyUI
    and this server are never reachable through it."""
    comfy = httpx.URL(settings.comfy.base_url)
    guard = OutboundGuard(
        allow_private=settings.storage.allow_private_urls,
        trusted_origins=settings.storage.trusted_origins,
        protected=(
            Endpoint(comfy.host, comfy.port or 80),
            Endpoint(settings.server.host, settings.server.port),
        ),
    )
    guard.trust(
        (
            settings.webhooks.system_url,
            settings.storage.aws_endpoint_url,
            settings.storage.hf_endpoint,
            settings.warmup.prompt_url,
        )
    )
    if settings.storage.allow_private_urls:
        log.warning(
            "ALLOW_PRIVATE_URLS=true: URLs in requests may reach loopback, private and cloud metadata addresses"
        )
    return guard


def _job_store(settings: Settings) -> tuple[MemoryJobStore, Path]:
    """The job store JOB_STORE asks for, and the folder its jobs' output files are collected into: a temporary one
    for the memory store, one beside the database for sqlite (emptied of files no record keeps)."""
    limits = StoreLimits(
        max_records=settings.jobs.records_max,
        record_ttl_s=settings.jobs.record_ttl_s,
        max_output_bytes=settings.jobs.outputs_max_bytes,
    )
    path = settings.jobs.store_path
    if path is None:
        return MemoryJobStore(limits), Path(tempfile.mkdtemp(prefix="comfyui-api-"))
    store = SqliteJobStore(path, limits)
    work_dir = path.parent / f"{path.stem}-outputs"
    work_dir.mkdir(parents=True, exist_ok=True)
    kept = set(store.kept_paths())
    for leftover in [p for p in work_dir.iterdir() if p.is_file() and p not in kept]:
        leftover.unlink(missing_ok=True)  # collected by a process that died before its job ended
    return store, work_dir


def readiness_phase(registry: JobRegistry, instance: ComfyInstanceLike, startup: StartupSequence | None) -> str:
    """ "ready", or why not: "draining", "provisioning", ComfyUI's phase, a start-up step ("models_pending",
    "loading_workflows", "warmup", "warmup_failed"), or "queue_full"."""
    if not registry.accepting:
        return "draining"
    if startup is not None and (step := startup.blocking_phase()) is not None:
        return step
    if not instance.is_ready:
        return instance.phase
    if registry.is_full:
        return "queue_full"
    return "ready"


class FrontDoor(Protocol):
    """A front door that takes work on its own (the AMQP consumer): it says what keeps it from being ready, stops
    taking work when the runtime drains, and closes before the services it uses."""

    def readiness(self) -> str | None: ...

    async def stop_consuming(self) -> None: ...

    async def close(self, grace_s: float) -> None: ...


class Runtime:
    """Owns the services of one server run. `start()` in a running event loop, then `drain()` and `close()`."""

    def __init__(self, settings: Settings, *, on_fatal: FatalHandler | None = None):
        self.settings = settings
        self._on_fatal = on_fatal
        store, self._work_dir = _job_store(settings)
        self.outbound = outbound_guard(settings)
        self._http = self.outbound.client(
            timeout=httpx.Timeout(settings.jobs.download_timeout_s, connect=_DOWNLOAD_CONNECT_TIMEOUT_S)
        )
        self.instance = ComfyInstance(settings.comfy, on_fatal=self._comfy_gone)
        self.registry = JobRegistry(max_depth=settings.server.max_queue_depth)
        self.system_events = SystemEventPublisher(settings.webhooks, job_id_for=self.registry.job_id_for_prompt)
        self._feed = ComfyEventFeed(self.instance.events, self.system_events)
        self.storage = StorageRegistry.from_settings(
            settings.storage, guard=self.outbound, on_event=self._storage_event
        )
        self.models = ModelServices.from_settings(
            settings.models,
            settings.comfy,
            downloader=storage_downloader(self.storage),
            on_event=self._model_event,
            url_check=self._check_url,
        )
        if self.models.manifest is not None:
            self.outbound.trust(self.models.manifest.model_urls)
        remote = RegistryInputSource(self.storage, settings.comfy.input_dir)
        # A ComfyUI on another machine cannot read input_dir: staged inputs are uploaded to it instead.
        uploader = None if settings.comfy.inputs_colocated else self.instance.client
        stager = InputStager(settings.jobs, settings.comfy.input_dir, http=self._http, remote=remote, uploader=uploader)
        collector = OutputCollector(settings.comfy, self.instance.client, self._work_dir)
        delivery = OutputDelivery(self.storage, max_fallback_bytes=settings.storage.max_base64_fallback_bytes)
        self.runner = JobRunner(
            self.instance,
            settings,
            registry=self.registry,
            stager=stager,
            collector=collector,
            delivery=delivery,
            models=self.models.resolver,
        )
        tracer, self._otel = job_tracer(settings.tracing)
        self.jobs = JobService(self.runner, store, url_check=self._check_url, tracer=tracer)
        self._webhook_delivery = WebhookDelivery(settings.webhooks, http_client_factory=self._webhook_client)
        self.webhooks = JobWebhooks(self._webhook_delivery, on_change=store.save)
        self.jobs.add_listener(self.webhooks)
        self.metrics = ServerMetrics(
            phase=self.readiness_phase,
            live_states=lambda: Counter(
                "running" if entry.status in (JobStatus.RUNNING, JobStatus.UPLOADING) else "queued"
                for entry in self.registry
            ),
            comfy_starts=lambda: self.instance.start_count,
            webhook_states=lambda: Counter(record.webhook.state for record in store if record.webhook is not None),
            model_cache=self.models.cache.usage,
        )
        self.jobs.add_listener(self.metrics)
        self.startup = StartupSequence(
            self.instance, self.models, Warmup(settings.warmup), self.runner, on_fatal=self._startup_failed
        )
        self.instance.add_ready_callback(self.startup.on_comfy_ready)
        self.ui_workflows = UiWorkflows(self.instance.client.object_info)
        self.instance.add_ready_callback(self.ui_workflows.forget)
        self._start_task: asyncio.Task[None] | None = None
        self._doors: list[FrontDoor] = []

    @property
    def draining(self) -> bool:
        return not self.registry.accepting

    def readiness_phase(self) -> str:
        phase = readiness_phase(self.registry, self.instance, self.startup)
        if phase != "ready":
            return phase
        for door in self._doors:
            if (door_phase := door.readiness()) is not None:
                return door_phase
        return phase

    def attach(self, door: FrontDoor) -> None:
        """A front door whose readiness counts and which is drained and closed with the runtime."""
        self._doors.append(door)

    def send_system_events_to(self, sink: SystemEventSink) -> None:
        """System events (SYSTEM_WEBHOOK_EVENTS) go to `sink` when SYSTEM_WEBHOOK_URL is unset (the AMQP exchange)."""
        self.system_events.send_to(sink)
        self._feed.start()

    async def _check_url(self, url: str, field: str) -> None:
        await self.outbound.check_url(url, field=field)

    def _webhook_client(self) -> httpx.AsyncClient:
        # Redirects are not followed: a redirected POST would silently change method or lose its body.
        return self.outbound.client(follow_redirects=False, headers={"user-agent": USER_AGENT})

    def _storage_event(self, event: StorageEvent) -> None:
        """storage.file_uploaded / storage.file_downloaded, forwarded to the system events (a no-op when off)."""
        self.system_events.publish(event.name, event.data())

    def _model_event(self, name: str, data: Mapping[str, Any]) -> None:
        """storage.file_downloaded / storage.file_deleted of the model cache, like `_storage_event`."""
        self.system_events.publish(name, data)

    def start(self) -> None:
        """Start ComfyUI in the background (the front doors answer /health and /ready meanwhile) and the system
        events (a no-op unless SYSTEM_WEBHOOK_URL and SYSTEM_WEBHOOK_EVENTS are set)."""
        self.settings.comfy.input_dir.mkdir(parents=True, exist_ok=True)
        self._start_task = asyncio.create_task(self._start_comfy(), name="comfyui-start")
        self.system_events.start()
        self._feed.start()
        for record in self.jobs.store.recovered:  # a journaling store is the webhooks' outbox
            self.webhooks.job_ended(record)

    async def _start_comfy(self) -> None:
        if not await self.startup.before_comfy_starts():
            return
        try:
            await self.instance.start()
        except ComfyUnavailable as exc:
            log.critical("ComfyUI did not start: %s", exc.message)
            self._comfy_gone(None)

    def _startup_failed(self, reason: str) -> None:
        self.registry.stop_admitting()
        if self._on_fatal is not None:
            self._on_fatal(FATAL_EXIT_CODE)

    def _comfy_gone(self, returncode: int | None) -> None:
        log.critical("ComfyUI is gone (exit code %s): the server stops", returncode)
        self.registry.stop_admitting()
        if self._on_fatal is not None:
            self._on_fatal(FATAL_EXIT_CODE)

    async def drain(self, grace_s: float) -> None:
        """Refuse new jobs (/ready turns 503), let live jobs finish for up to grace_s, then cancel the rest."""
        for door in self._doors:
            await door.stop_consuming()
        self.registry.stop_admitting()
        log.info("draining: %d job(s) in flight, waiting up to %gs", self.registry.depth, grace_s)
        if not await self.registry.wait_idle(grace_s):
            log.warning("draining: %d job(s) still running after %gs", self.registry.depth, grace_s)
            await self.cancel_jobs()

    async def cancel_jobs(self) -> None:
        """Cancel every live job (each fails with JobCancelled) and wait briefly for them to wind down."""
        self.registry.stop_admitting()
        for entry in self.registry:
            entry.request_cancel("cancelled: the server is shutting down")
        await self.registry.wait_idle(_CANCEL_WAIT_S)

    async def close(self) -> None:
        self.registry.stop_admitting()
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._start_task
        for door in self._doors:
            await door.close(_DELIVERY_CLOSE_S)
        await self.jobs.settle(_DELIVERY_CLOSE_S)
        await self.webhooks.aclose(_DELIVERY_CLOSE_S)
        await self._webhook_delivery.aclose(_DELIVERY_CLOSE_S)
        await self._feed.aclose()
        await self.system_events.aclose(_SYSTEM_EVENTS_CLOSE_S)
        if self._otel is not None:  # after the webhooks: their `deliver` spans go out too
            await asyncio.to_thread(self._otel.shutdown)
        await self.instance.stop(_COMFY_STOP_GRACE_S)
        self.jobs.store.close()
        await self._http.aclose()
        await self.models.aclose()
        await self.storage.aclose()
        if self.settings.jobs.store_path is None:  # a journaled store's files outlive the process
            shutil.rmtree(self._work_dir, ignore_errors=True)
