"""A small task producer for the AMQP protocol: `submit` a `POST /prompt` body to an input queue and wait for its
result event by task id. For scripts and tests; needs only aio-pika.

    async with TaskProducer("amqp://guest:guest@localhost:5672/") as producer:
        task_id = await producer.submit("q.gpu.20g", {"prompt": graph}, priority=5)
        result = await producer.result(task_id, timeout_s=600)   # the execution_success / _error envelope
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustChannel, AbstractRobustConnection

from comfyui_api.dialects.amqp import SHARED_QUEUE_MAX_PRIORITY

DEFAULT_EXCHANGE = "runnode.comfyui.topic"
OUTCOMES = ("execution_success", "execution_error", "execution_interrupted")
_CONNECT_TIMEOUT_S = 10.0


class TaskProducer:
    def __init__(self, url: str, *, exchange: str = DEFAULT_EXCHANGE):
        self._url = url
        self._exchange_name = exchange
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._results: dict[str, dict[str, Any]] = {}
        self.outcome_counts: Counter[str] = Counter()  # outcome events seen per task id (>1: a duplicate result)

    async def __aenter__(self) -> TaskProducer:
        self._connection = await aio_pika.connect_robust(self._url, timeout=_CONNECT_TIMEOUT_S)
        self._channel = await self._connection.channel(publisher_confirms=True)
        exchange = await self._channel.declare_exchange(self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        results = await self._channel.declare_queue(exclusive=True, auto_delete=True)
        await results.bind(exchange, routing_key="event.result.#")
        await results.consume(self._on_result, no_ack=True)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._connection is not None:
            await self._connection.close()

    async def submit(
        self, queue: str, body: Mapping[str, Any], *, priority: int | None = None, task_id: str | None = None
    ) -> str:
        """Publish a task (persistent, confirmed) to `queue`; returns its task id (the body's `id`, else new)."""
        assert self._channel is not None, "use `async with TaskProducer(...)`"
        task_id = task_id or str(body.get("id") or uuid.uuid4().hex)
        payload = {**body, "id": task_id}
        self._waiting.setdefault(task_id, asyncio.get_running_loop().create_future())
        message = aio_pika.Message(
            json.dumps(payload).encode(),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=task_id,
            priority=None if priority is None else max(0, min(SHARED_QUEUE_MAX_PRIORITY, priority)),
        )
        await self._channel.default_exchange.publish(message, routing_key=queue)
        return task_id

    async def result(self, task_id: str, *, timeout_s: float) -> dict[str, Any]:
        """The task's outcome envelope (execution_success, execution_error or execution_interrupted); the first one
        when a worker died between publishing it and acknowledging the task (deduplicated by task id)."""
        if task_id in self._results:
            return self._results[task_id]
        future = self._waiting.setdefault(task_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(asyncio.shield(future), timeout_s)

    async def _on_result(self, message: AbstractIncomingMessage) -> None:
        try:
            event = json.loads(message.body)
        except ValueError:
            return
        if not isinstance(event, dict) or event.get("event_type") not in OUTCOMES:
            return
        task_id = str(event.get("task_id"))
        self.outcome_counts[task_id] += 1
        self._results.setdefault(task_id, event)
        future = self._waiting.get(task_id)
        if future is not None and not future.done():
            future.set_result(event)
