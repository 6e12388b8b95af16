"""The AMQP front door: takes tasks from the instance's input queue, runs each through the job service, publishes
its events on the topic exchange, and acknowledges a task only once its outcome is durable (uploads done, the
persistent result event confirmed by the broker). A worker that dies mid-task leaves the message unacked and the
broker hands it to another worker; a redelivered task this instance already finished is acknowledged without
running again. aio-pika only (the `[amqp]` extra); the wire shapes live in `dialects/amqp.py`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import ssl
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import aio_pika
import msgspec
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from comfyui_api.dialects.amqp import (
    SHARED_QUEUE_MAX_PRIORITY,
    WireEvent,
    envelope,
    error_event,
    gpu_type,
    input_queue,
    wire_event,
)
from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.dialects.salad_body import record_body
from comfyui_api.dialects.salad_request import to_job_request
from comfyui_api.errors import CapacityError, ComfyApiError, ComfyUnavailable, InvalidRequest, JobCancelled
from comfyui_api.jobs.model import JobCompleted, JobFailed
from comfyui_api.jobs.staging import is_safe_job_id
from comfyui_api.runtime import Runtime
from comfyui_api.settings import AmqpSettings
from comfyui_api.version import package_version

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S = 10.0
_RECONNECT_MAX_S = 30.0
_PUBLISH_TIMEOUT_S = 10.0  # a publish (with its confirm) that takes longer is retried
_FINISHED_KEPT = 4096  # task ids this instance finished, for acking redeliveries without running them again
_REQUEUE_DELAY_S = 1.0  # a task refused for capacity goes back after this long (no hot loop)
_PREVIEW_INTERVAL_S = 1.0  # binary previews are large: at most one a second per task


class AmqpWorker:
    """`start()` connects (retrying with backoff) and consumes; `readiness()` says `broker_disconnected` while there
    is no connection; `stop_consuming()` then `close(grace_s)` at shutdown."""

    def __init__(self, runtime: Runtime, settings: AmqpSettings, *, system_meta: Mapping[str, str] | None = None):
        self._runtime = runtime
        self._settings = settings
        self._meta = dict(system_meta or {})
        self._queue_choice = input_queue(
            dedicated_id=settings.instance_dedicated_id,
            workflow_id=settings.instance_workflow_id,
            is_free=settings.instance_is_free,
            gpu_vram=settings.instance_gpu_vram,
        )
        self.instance_id = settings.instance_id or f"comfyui-api-{socket.gethostname()}-{os.getpid()}"
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._connected = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._deliveries: dict[str, AbstractIncomingMessage] = {}  # task id -> its latest delivery, to ack
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started_at = time.time()
        self._closing = False

    @property
    def queue_name(self) -> str:
        return self._queue_choice.name

    def readiness(self) -> str | None:
        return None if self._connected.is_set() else "broker_disconnected"

    def start(self) -> None:
        self._spawn(self._connect_and_consume(), "amqp-connect")

    def _spawn(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- connection ----

    async def _connect_and_consume(self) -> None:
        delay_s = 0.5
        while not self._closing:
            try:
                await self._connect()
                break
            except (OSError, aio_pika.exceptions.AMQPError, TimeoutError) as exc:
                log.warning("AMQP broker unreachable (%s); retrying in %.1fs", type(exc).__name__, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(_RECONNECT_MAX_S, delay_s * 2)
        if self._closing:
            return
        await self._wait_for_comfy()
        await self._register()
        if self._settings.heartbeat_enabled:
            self._spawn(self._heartbeats(), "amqp-heartbeat")
        await self._consume()

    async def _connect(self) -> None:
        settings = self._settings
        context = _tls_context(settings) if settings.url.startswith("amqps://") else None
        connection = await aio_pika.connect_robust(
            settings.url,
            timeout=_CONNECT_TIMEOUT_S,
            ssl_context=context,
            client_properties={"connection_name": self.instance_id},
        )
        connection.close_callbacks.add(self._on_close)
        connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await connection.channel(publisher_confirms=True)
        await channel.set_qos(prefetch_count=settings.prefetch)
        self._exchange = await channel.declare_exchange(settings.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        arguments: dict[str, Any] = {}
        if self._queue_choice.shared:
            arguments["x-max-priority"] = SHARED_QUEUE_MAX_PRIORITY
        if settings.dead_letter_exchange:
            arguments["x-dead-letter-exchange"] = settings.dead_letter_exchange
        self._queue = await channel.declare_queue(self.queue_name, durable=True, arguments=arguments or None)
        self._connection, self._channel = connection, channel
        self._connected.set()
        self._runtime.send_system_events_to(self._publish_system_event)
        log.info("AMQP connected; taking tasks from %s", self.queue_name)

    def _on_close(self, *_: Any) -> None:
        if not self._closing:
            log.warning("AMQP connection lost; reconnecting")
        self._connected.clear()

    def _on_reconnect(self, *_: Any) -> None:
        log.info("AMQP reconnected")
        self._connected.set()

    async def _wait_for_comfy(self) -> None:
        """Take no task before ComfyUI can run it (a task taken early would only be requeued)."""
        while not self._closing and self._runtime.readiness_phase() not in ("ready", "queue_full"):  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # readiness has no event to wait on: it is computed from several services

    async def _consume(self) -> None:
        assert self._queue is not None
        self._consumer_tag = await self._queue.consume(self._on_message)

    async def stop_consuming(self) -> None:
        """Take no more tasks (SIGTERM); running ones go on."""
        self._closing = True
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except Exception:  # shutdown boundary: the connection may already be gone
                log.debug("cancelling the AMQP consumer failed", exc_info=True)
            self._consumer_tag = None

    async def close(self, grace_s: float) -> None:
        """Let running tasks finish within `grace_s`; the rest stay unacked (the broker redelivers them) and their
        jobs are cancelled here. Then unregister and disconnect."""
        await self.stop_consuming()
        running = set(self._running.values())
        if running:
            _, late = await asyncio.wait(running, timeout=max(0.0, grace_s))
            for job_id, task in list(self._running.items()):
                if task in late:
                    log.warning("task %s did not finish within %gs: left unacked for redelivery", job_id, grace_s)
                    task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._connected.is_set():
            try:
                await self._publish_service("unregister", {**self._identity(), "reason": "SHUTDOWN"}, persistent=True)
            except Exception:  # shutdown boundary
                log.warning("could not publish service.instance.unregister", exc_info=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._connection is not None:
            await self._connection.close()
        self._connected.clear()

    # ---- tasks ----

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            body = _decode(message.body)
        except ValueError:
            log.warning("AMQP message %s is not JSON: rejected without requeue", message.message_id)
            await message.reject(requeue=False)
            return
        task_id = _task_id(body, message)
        if task_id in self._finished:
            log.info("task %s was already finished here: acked without running it again", task_id)
            await message.ack()
            return
        if task_id in self._running:
            # The connection dropped mid-task and the broker handed the task back: the run goes on, and its
            # outcome acknowledges this delivery (the earlier one died with its channel).
            log.info("task %s was redelivered while it runs here: its outcome will acknowledge it", task_id)
            self._deliveries[task_id] = message
            return
        job = asyncio.current_task()
        assert job is not None
        self._running[task_id] = job
        self._deliveries[task_id] = message
        try:
            await self._run_task(task_id, body)
        finally:
            self._running.pop(task_id, None)
            self._deliveries.pop(task_id, None)

    async def _run_task(self, task_id: str, body: Any) -> None:
        metadata: Mapping[str, Any] = {}
        try:
            if isinstance(body, dict):
                body.setdefault("id", task_id)
                given = body.get("metadata")
                metadata = given if isinstance(given, Mapping) else {}
                if isinstance(body.get("prompt"), dict):  # a workflow as the editor saves it is converted
                    body["prompt"] = await self._runtime.ui_workflows.to_api(body["prompt"])
            settings, storage = self._runtime.settings.jobs, self._runtime.storage
            request = to_job_request(_prompt_request(body), settings, storage, source="amqp")
        except ComfyApiError as exc:
            await self._finish(task_id, error_event(exc), metadata)
            return
        try:
            record = await self._runtime.jobs.submit(request)
        except (CapacityError, ComfyUnavailable) as exc:
            log.info("task %s refused for now (%s): requeued", task_id, exc.message)
            await asyncio.sleep(_REQUEUE_DELAY_S)
            await self._deliveries[task_id].nack(requeue=True)
            return
        except ComfyApiError as exc:
            await self._finish(task_id, error_event(exc), metadata)
            return
        record.acquire()
        try:
            outcome = await self._follow(task_id, metadata)
            if isinstance(outcome, JobFailed) and isinstance(outcome.error, JobCancelled) and self._closing:
                log.warning("task %s was stopped by the shutdown: returned to the queue", task_id)
                await self._deliveries[task_id].nack(requeue=True)
                return
            if isinstance(outcome, JobCompleted):
                answer = json.loads(b"".join([piece async for piece in record_body(record)]))
                final = WireEvent("execution_success", answer, persistent=True)
            else:
                final = error_event(outcome.error)
        except asyncio.CancelledError:
            await self._runtime.jobs.cancel(task_id, "cancelled: the worker is stopping; the task goes back")
            raise
        finally:
            record.unhold()
        await self._finish(task_id, final, metadata)

    async def _follow(self, task_id: str, metadata: Mapping[str, Any]) -> JobCompleted | JobFailed:
        registry = self._runtime.registry
        prompt_id: str | None = None
        preview_at = 0.0
        async for item in self._runtime.jobs.subscribe(task_id):
            if item is None:
                continue
            event = item.event
            if isinstance(event, JobCompleted | JobFailed):
                return event
            if prompt_id is None and task_id in registry:
                prompt_id = registry.get(task_id).prompt_id
            wire = wire_event(event, prompt_id)
            if wire is None:
                continue
            if wire.event_type == "binary_preview":
                now = time.monotonic()
                if now - preview_at < _PREVIEW_INTERVAL_S:
                    continue
                preview_at = now
            try:
                await self._publish(task_id, wire, metadata)
            except Exception as exc:  # the run goes on without the broker: only its outcome must get through
                log.debug("event %s of task %s not published (%s)", wire.event_type, task_id, exc)
        raise ComfyApiError(f"the events of task {task_id} ended without an outcome")

    async def _finish(self, task_id: str, final: WireEvent, metadata: Mapping[str, Any]) -> None:
        """Publish the outcome (confirmed; retried across reconnections), then ack: never the other way round."""
        delay_s = 0.5
        while True:
            try:
                await self._publish(task_id, final, metadata)
                break
            except Exception as exc:  # the connection dropped: wait for the robust connection to come back
                if self._closing and not self._connected.is_set():
                    log.warning("outcome of task %s not published before shutdown: left for redelivery", task_id)
                    return
                log.warning("outcome of task %s not published yet (%s); retrying", task_id, type(exc).__name__)
                await asyncio.sleep(delay_s)
                delay_s = min(_RECONNECT_MAX_S, delay_s * 2)
        self._finished[task_id] = None
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)
        try:
            await self._deliveries[task_id].ack()
        except Exception as exc:  # its channel is gone: the redelivery is acked as already finished
            log.info("ack of task %s failed (%s): its redelivery will be acked without a rerun", task_id, exc)

    async def _publish(self, task_id: str, wire: WireEvent, metadata: Mapping[str, Any]) -> None:
        payload = envelope(task_id, wire.event_type, wire.data, {**self._meta, **metadata})
        headers = {"task_id": task_id, "event_type": wire.event_type}
        await self._send(wire.routing_key, payload, persistent=wire.persistent, headers=headers)

    async def _publish_system_event(self, name: str, data: dict[str, Any], metadata: dict[str, str]) -> bool:
        """A system event (SYSTEM_WEBHOOK_EVENTS, no SYSTEM_WEBHOOK_URL): `event.system.<name>`, task_id "system"."""
        if self._exchange is None or not self._connected.is_set():
            return False
        payload = envelope("system", name, data, {**self._meta, **metadata})
        await self._send(f"event.system.{name}", payload, persistent=False)
        return True

    async def _send(
        self, routing_key: str, payload: Mapping[str, Any], *, persistent: bool, headers: dict[str, Any] | None = None
    ) -> None:
        """One JSON message on the exchange, confirmed by the broker within _PUBLISH_TIMEOUT_S."""
        assert self._exchange is not None
        delivery = aio_pika.DeliveryMode.PERSISTENT if persistent else aio_pika.DeliveryMode.NOT_PERSISTENT
        message = aio_pika.Message(
            json.dumps(payload).encode(),
            content_type="application/json",
            delivery_mode=delivery,
            message_id=uuid.uuid4().hex,
            headers=headers,
        )
        await self._exchange.publish(message, routing_key=routing_key, timeout=_PUBLISH_TIMEOUT_S)

    # ---- registry ----

    def _identity(self) -> dict[str, Any]:
        settings = self._settings
        return {
            "instance_id": self.instance_id,
            "server_url": settings.public_url,
            "ws_url": settings.public_ws_url,
            "api_url": settings.api_url,
            "type": gpu_type(settings.instance_gpu_vram),
            "monopolize_type": 1 if settings.instance_dedicated_id else 2,
            "version": package_version(),
            "capabilities": {
                "max_concurrent_tasks": settings.prefetch,
                "supported_models": list(settings.supported_models),
                "gpu_memory": settings.instance_gpu_vram,
            },
        }

    async def _publish_service(self, kind: str, data: Mapping[str, Any], *, persistent: bool) -> None:
        payload = envelope("system", f"instance_{kind}", dict(data), self._meta)
        await self._send(f"service.instance.{kind}", payload, persistent=persistent)

    async def _register(self) -> None:
        delay_s = 0.5
        while not self._closing:
            try:
                await self._publish_service("register", self._identity(), persistent=True)
                log.info("Instance registered: %s", self.instance_id)
                return
            except Exception as exc:  # retried: the broker may be restarting
                log.warning("instance registration failed (%s); retrying in %.1fs", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(_RECONNECT_MAX_S, delay_s * 2)

    async def _heartbeats(self) -> None:
        interval_s = self._settings.heartbeat_interval_ms / 1000.0
        log.info("Heartbeat started (interval=%dms)", self._settings.heartbeat_interval_ms)
        while True:
            if self._connected.is_set():
                running = list(self._running)
                data = {
                    "instance_id": self.instance_id,
                    "status": "BUSY" if running else "IDLE",
                    "current_task_id": running[0] if running else None,
                    "queue_size": self._runtime.registry.depth,
                    "system_info": _system_info(self._started_at),
                }
                try:
                    await self._publish_service("heartbeat", data, persistent=False)
                except Exception:  # a missed heartbeat is not worth more than a debug line
                    log.debug("heartbeat not sent", exc_info=True)
            await asyncio.sleep(interval_s)


def _decode(raw: bytes) -> Any:
    """JSON, also when double-encoded (a JSON string holding the JSON body)."""
    body = json.loads(raw)
    if isinstance(body, str):
        body = json.loads(body)
    return body


def _task_id(body: Any, message: AbstractIncomingMessage) -> str:
    """The body's `id`, else the message id, else a new one."""
    for candidate in ((body.get("id") if isinstance(body, dict) else None), message.message_id):
        if isinstance(candidate, str) and is_safe_job_id(candidate):
            return candidate
    return uuid.uuid4().hex


def _prompt_request(body: Any) -> PromptRequest:
    try:
        return msgspec.convert(body, PromptRequest)
    except msgspec.ValidationError as exc:
        text = str(exc)
        field = text.rsplit("at `$.", 1)[1].rstrip("`") if "at `$." in text else "body"
        raise InvalidRequest(text, field=field) from None


def _system_info(started_at: float) -> dict[str, Any]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo if line.split()[1:2]}
        memory = 1.0 - fields.get("MemAvailable", 0) / max(1, fields.get("MemTotal", 1))
    except (OSError, ValueError, IndexError):
        memory = 0.0
    return {"cpu_usage": round(load, 2), "memory_usage": round(memory, 3), "uptime": round(time.time() - started_at)}


def _tls_context(settings: AmqpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.tls_ca_file) if settings.tls_ca_file else None)
    if settings.tls_cert_file is not None:
        context.load_cert_chain(
            str(settings.tls_cert_file), str(settings.tls_key_file) if settings.tls_key_file else None
        )
    return context
