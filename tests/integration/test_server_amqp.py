"""Scale-out over the real RabbitMQ (127.0.0.1:5672, guest/guest), the simulator as ComfyUI: tasks from the input
queue run through the job service, every event carries the protocol's envelope and routing key, a malformed body
gets an execution_error (and non-JSON is dead-lettered), the registry hears register/heartbeat/unregister, the
shared queue honours priorities, and a worker SIGKILLed mid-task loses nothing."""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import trustme

from comfyui_api.amqp.producer import TaskProducer
from tests.integration.proxy import TcpProxy
from tests.integration.server import ServerProcess, image_graph, make_server, sampler_graph, wait_until

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


@pytest.fixture
def exchange() -> str:
    return f"test.comfyui.{uuid.uuid4().hex[:8]}"  # one exchange a test: no stray events from other tests


class Events:
    """Every event on the exchange, in arrival order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []

    async def on_message(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.items.append((message.routing_key or "", json.loads(message.body)))

    def of(self, task_id: str) -> list[tuple[str, dict[str, Any]]]:
        return [(key, body) for key, body in self.items if body.get("task_id") == task_id]

    def keys(self, prefix: str) -> list[str]:
        return [key for key, _ in self.items if key.startswith(prefix)]


@pytest.fixture
async def events(exchange: str) -> AsyncIterator[Events]:
    connection = await aio_pika.connect_robust(BROKER, timeout=10)
    channel = await connection.channel()
    topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topic, routing_key="#")
    collected = Events()
    await queue.consume(collected.on_message, no_ack=True)
    yield collected
    await topic.delete()
    await connection.close()


def worker(root: Path, exchange: str, **env: str) -> ServerProcess:
    base = {"AMQP_URL": BROKER, "AMQP_EXCHANGE_TOPIC": exchange, "HEARTBEAT_INTERVAL": "300", **env}
    return make_server(root, env=base, step_seconds=0.01)


@pytest.fixture
def workers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(workers: list[ServerProcess], server: ServerProcess) -> ServerProcess:
    workers.append(server.start())
    server.wait_ready()
    return server


async def is_ready(server: ServerProcess) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(server.url("/ready"))).status_code == 200
    except httpx.HTTPError:
        return False


async def delete_queue(name: str) -> None:
    connection = await aio_pika.connect_robust(BROKER, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(name)


async def test_a_task_runs_and_every_event_has_the_envelope_and_routing_key(
    tmp_path: Path, exchange: str, events: Events, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    start(workers, worker(tmp_path, exchange, INSTANCE_DEDICATED_ID=queue_id, SYSTEM_META_region="eu-1"))
    async with TaskProducer(BROKER, exchange=exchange) as producer:
        task_id = await producer.submit(f"q.instance.{queue_id}", {"prompt": sampler_graph(5), "metadata": {"a": 1}})
        result = await producer.result(task_id, timeout_s=60)
    assert result["event_type"] == "execution_success"
    assert set(result) == {"protocol_version", "task_id", "event_type", "timestamp", "data", "metadata"}
    assert result["protocol_version"] == "1.0" and result["metadata"] == {"region": "eu-1", "a": 1}
    assert len(result["data"]["images"]) == 1 and result["data"]["stats"]["total_time"] > 0
    await wait_until(lambda: _async_true(any(k == "event.result.execution_success" for k, _ in events.of(task_id))))
    keys = [key for key, _ in events.of(task_id)]
    results = [key for key in keys if key.startswith("event.result.")]
    assert results[0] == "event.result.execution_start" and keys[-1] == "event.result.execution_success"
    assert "event.stream.progress" in keys and "event.result.executed" in keys
    assert "event.stream.progress_state" in keys, "ComfyUI 0.33+ (the simulator's default) sends per-node state"
    progress = next(body["data"] for key, body in events.of(task_id) if key == "event.stream.progress")
    assert {"value", "max", "prompt_id", "node", "percent"} <= set(progress)
    states = next(body["data"] for key, body in events.of(task_id) if key == "event.stream.progress_state")
    assert states["prompt_id"] == progress["prompt_id"] and isinstance(states["nodes"], dict)

    async with TaskProducer(BROKER, exchange=exchange) as producer:  # the same graph again: ComfyUI reuses nodes
        again = await producer.submit(f"q.instance.{queue_id}", {"prompt": sampler_graph(5)})
        assert (await producer.result(again, timeout_s=60))["event_type"] == "execution_success"
    await wait_until(lambda: _async_true(any(k == "event.result.execution_success" for k, _ in events.of(again))))
    cached = [body["data"] for key, body in events.of(again) if key == "event.result.execution_cached"]
    assert cached and "3" in cached[0]["nodes"], f"the sampler (node 3) was cached: {cached}"
    await delete_queue(f"q.instance.{queue_id}")


async def _async_true(value: bool) -> bool:
    return value


async def test_a_malformed_body_gets_an_error_event_and_non_json_is_dead_lettered(
    tmp_path: Path, exchange: str, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    dead = f"test.dead.{queue_id}"
    connection = await aio_pika.connect_robust(BROKER, timeout=10)
    async with connection:
        channel = await connection.channel()
        dlx = await channel.declare_exchange(dead, aio_pika.ExchangeType.FANOUT, durable=False, auto_delete=True)
        parked = await channel.declare_queue(exclusive=True)
        await parked.bind(dlx)
        start(workers, worker(tmp_path, exchange, INSTANCE_WORKFLOW_ID=queue_id, AMQP_DEAD_LETTER_EXCHANGE=dead))
        async with TaskProducer(BROKER, exchange=exchange) as producer:
            task_id = await producer.submit(f"q.workflow.{queue_id}", {"prompt": image_graph(), "timeout_s": "soon"})
            error = await producer.result(task_id, timeout_s=30)
            await channel.default_exchange.publish(aio_pika.Message(b"{not json"), routing_key=f"q.workflow.{queue_id}")
            await wait_until(lambda: _has_message(parked), timeout_s=15)
        assert error["event_type"] == "execution_error"
        assert error["data"]["field"] == "timeout_s"
        await channel.queue_delete(f"q.workflow.{queue_id}")


async def _has_message(queue: aio_pika.abc.AbstractQueue) -> bool:
    message = await queue.get(fail=False)
    return message is not None and message.body == b"{not json"


async def test_the_registry_hears_register_heartbeats_and_unregister(
    tmp_path: Path, exchange: str, events: Events, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    server = start(workers, worker(tmp_path, exchange, INSTANCE_DEDICATED_ID=queue_id, INSTANCE_ID=f"gpu-{queue_id}"))
    await wait_until(lambda: _async_true(len(events.keys("service.instance.heartbeat")) >= 2), timeout_s=15)
    server.signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.wait_exit) == 0
    await wait_until(lambda: _async_true(bool(events.keys("service.instance.unregister"))), timeout_s=10)
    bodies = {key: body["data"] for key, body in events.items}
    assert bodies["service.instance.register"]["instance_id"] == f"gpu-{queue_id}"
    assert bodies["service.instance.register"]["monopolize_type"] == 1
    assert bodies["service.instance.heartbeat"]["status"] == "IDLE"
    assert bodies["service.instance.unregister"]["reason"] == "SHUTDOWN"
    logs = server.logs()
    assert f"Instance registered: gpu-{queue_id}" in logs and "Heartbeat started (interval=300ms)" in logs
    await delete_queue(f"q.instance.{queue_id}")


async def test_ready_says_broker_disconnected_without_a_broker(tmp_path: Path, workers: list[ServerProcess]) -> None:
    server = make_server(tmp_path, env={"AMQP_URL": "amqp://guest:guest@127.0.0.1:9/"}).start()
    workers.append(server)

    async def disconnected() -> bool:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.get(server.url("/ready"))
        except httpx.HTTPError:  # not listening yet
            return False
        return answer.status_code == 503 and "broker_disconnected" in answer.text

    await wait_until(disconnected, timeout_s=30)


async def test_a_shared_queue_runs_higher_priorities_first(
    tmp_path: Path, exchange: str, workers: list[ServerProcess]
) -> None:
    vram = f"t{uuid.uuid4().hex[:6]}"
    queue = f"q.gpu.{vram}"
    connection = await aio_pika.connect_robust(BROKER, timeout=10)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True, arguments={"x-max-priority": 10})
    async with TaskProducer(BROKER, exchange=exchange) as producer:
        low = [await producer.submit(queue, {"prompt": image_graph()}, priority=1) for _ in range(3)]
        high = await producer.submit(queue, {"prompt": image_graph()}, priority=9)
        start(workers, worker(tmp_path, exchange, INSTANCE_GPU_VRAM=vram.upper()))
        finished = [await producer.result(task, timeout_s=60) for task in [high, *low]]
    order = sorted(finished, key=lambda event: event["timestamp"])
    assert order[0]["task_id"] == high
    await delete_queue(queue)


async def test_a_worker_killed_mid_task_loses_nothing(
    tmp_path: Path, exchange: str, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    queue = f"q.workflow.{queue_id}"
    fleet = [worker(tmp_path / f"w{n}", exchange, INSTANCE_WORKFLOW_ID=queue_id) for n in range(3)]
    for server in fleet:
        workers.append(server.start())
    for server in fleet:
        server.wait_ready()
    async with TaskProducer(BROKER, exchange=exchange) as producer:
        tasks = [await producer.submit(queue, {"prompt": sampler_graph(30, seed=n)}) for n in range(30)]
        victim = fleet[0]

        async def victim_busy() -> bool:
            async with httpx.AsyncClient(timeout=5) as client:
                jobs = (await client.get(victim.url("/jobs"), params={"status": "running"})).json()["jobs"]
            return bool(jobs)

        await wait_until(victim_busy, timeout_s=30)
        async with httpx.AsyncClient(timeout=5) as client:
            running = (await client.get(victim.url("/jobs"), params={"status": "running"})).json()["jobs"]
        victim.signal(signal.SIGKILL)
        results = [await producer.result(task, timeout_s=120) for task in tasks]
        await asyncio.sleep(1.0)  # a late duplicate would arrive now
    assert {result["task_id"] for result in results} == set(tasks)
    assert all(result["event_type"] == "execution_success" for result in results)
    assert running and running[0]["id"] in tasks  # the killed worker's task, redelivered and finished elsewhere
    # A duplicate result is possible only when the victim died between publishing a result and acking its task.
    assert sum(producer.outcome_counts[task] for task in tasks) <= len(tasks) + 1
    await delete_queue(queue)


async def test_a_dropped_broker_connection_loses_no_task(
    tmp_path: Path, exchange: str, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    async with TcpProxy(5672) as proxy, TaskProducer(BROKER, exchange=exchange) as producer:
        server = worker(
            tmp_path, exchange, AMQP_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", INSTANCE_WORKFLOW_ID=queue_id
        )
        workers.append(server.start())  # the proxy runs in this loop: wait for /ready without blocking it
        await wait_until(lambda: is_ready(server), timeout_s=60)
        tasks = [
            await producer.submit(f"q.workflow.{queue_id}", {"prompt": sampler_graph(40, seed=n)}) for n in range(6)
        ]
        await producer.result(tasks[0], timeout_s=60)
        await proxy.cut()  # mid-run: the worker holds its next task, unacked, when its connection dies

        async def reports_disconnected() -> bool:
            async with httpx.AsyncClient(timeout=5) as client:
                return "broker_disconnected" in (await client.get(server.url("/ready"))).text

        await wait_until(reports_disconnected, timeout_s=10)
        results = [await producer.result(task, timeout_s=90) for task in tasks]
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.stop)  # while its broker is still reachable (through this loop's proxy)
    assert [result["event_type"] for result in results] == ["execution_success"] * len(tasks)
    assert "AMQP reconnected" in server.logs()
    # At least once: an outcome confirmed by the broker just as the connection died may be published again.
    assert sum(producer.outcome_counts[task] for task in tasks) <= len(tasks) + 1
    await delete_queue(f"q.workflow.{queue_id}")


async def test_a_broker_over_amqps_with_a_client_certificate(
    tmp_path: Path, exchange: str, workers: list[ServerProcess]
) -> None:
    """TLS in front of the broker (mutual: the worker must show a certificate the CA signed), with the CA, the
    certificate and its key given as AMQP_TLS_CA_FILE / AMQP_TLS_CERT_FILE / AMQP_TLS_KEY_FILE."""
    authority = trustme.CA()
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_side)
    server_side.verify_mode = ssl.CERT_REQUIRED
    authority.configure_trust(server_side)
    client = authority.issue_cert("worker.example")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "worker.pem", tmp_path / "worker.key"
    authority.cert_pem.write_to_path(str(ca_file))
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    queue_id = uuid.uuid4().hex[:8]
    async with TcpProxy(5672, ssl_context=server_side) as tls, TaskProducer(BROKER, exchange=exchange) as producer:
        server = worker(
            tmp_path / "worker",
            exchange,
            AMQP_URL=f"amqps://guest:guest@127.0.0.1:{tls.port}/",
            AMQP_TLS_CA_FILE=str(ca_file),
            AMQP_TLS_CERT_FILE=str(cert_file),
            AMQP_TLS_KEY_FILE=str(key_file),
            INSTANCE_DEDICATED_ID=queue_id,
        )
        workers.append(server.start())  # the TLS proxy runs in this loop: wait for /ready without blocking it
        await wait_until(lambda: is_ready(server), timeout_s=60)
        task_id = await producer.submit(f"q.instance.{queue_id}", {"prompt": image_graph()})
        result = await producer.result(task_id, timeout_s=60)
        assert result["event_type"] == "execution_success" and result["data"]["images"]
        assert tls.accepted >= 1 and tls.open_connections >= 1, "the worker's connection went through TLS"
        await asyncio.to_thread(server.stop)  # while its broker is still reachable: it unregisters and exits
    assert "Instance registered" in server.logs()
    await delete_queue(f"q.instance.{queue_id}")


async def test_the_worker_command_serves_only_probes_and_sends_system_events_to_the_exchange(
    tmp_path: Path, exchange: str, events: Events, workers: list[ServerProcess]
) -> None:
    queue_id = uuid.uuid4().hex[:8]
    server = worker(tmp_path, exchange, INSTANCE_WORKFLOW_ID=queue_id, SYSTEM_WEBHOOK_EVENTS="execution_start")
    server.args = ("worker",)
    start(workers, server)
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(server.url("/health"))).status_code == 200
        assert (await client.post(server.url("/prompt"), json={"prompt": image_graph()})).status_code == 404
        assert (await client.get(server.url("/jobs"))).status_code == 404
    async with TaskProducer(BROKER, exchange=exchange) as producer:
        task = await producer.submit(f"q.workflow.{queue_id}", {"prompt": image_graph()})
        assert (await producer.result(task, timeout_s=60))["event_type"] == "execution_success"

    def system_events() -> list[dict[str, Any]]:
        return [body for key, body in events.items if key == "event.system.comfy.execution_start"]

    async def heard() -> bool:
        return bool(system_events())

    await wait_until(heard, timeout_s=10)
    event = system_events()[0]
    assert (event["task_id"], event["event_type"], event["data"]["prompt_id"]) == (
        "system",
        "comfy.execution_start",
        task,
    )
    await delete_queue(f"q.workflow.{queue_id}")


def test_the_worker_command_needs_a_broker(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.args = ("worker",)
    server.start()
    assert server.wait_exit() == 2
    assert "AMQP_URL" in server.logs()
