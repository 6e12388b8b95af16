"""Scale-out over RabbitMQ, measured: task throughput of 3 workers on one queue against 1 worker, and what a task
costs over the broker against the same job over HTTP. Each worker is a `comfyui-api worker` with its own simulator
whose sampler sleeps `STEP_S` a step (simulated GPU time), so workers do not share a "GPU".

Part of `python -m benchmarks.run` (skipped, saying so, when no broker answers at --amqp-url).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from comfyui_api.amqp.producer import TaskProducer

STEP_S = 0.025
STEPS = 20  # 0.5 s of simulated GPU time a task
_START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def broker_reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


def _graph(checkpoint: str, seed: int) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": STEPS,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "amqp"}},
    }


class Worker:
    """`comfyui-api serve` with AMQP on (HTTP kept, for the HTTP row) and its own simulator."""

    def __init__(self, work: Path, name: str, amqp_url: str, exchange: str, queue_id: str):
        root = work / name
        dirs = {kind: root / kind for kind in ("input", "output", "temp")}
        for directory in dirs.values():
            directory.mkdir(parents=True, exist_ok=True)
        comfy_port, self.port = _free_port(), _free_port()
        simulator = [
            sys.executable, "-m", "comfyui_api.simulator", "--listen", "127.0.0.1", "--port", str(comfy_port),
            "--step-seconds", str(STEP_S),
            *(arg for kind, directory in dirs.items() for arg in (f"--{kind}-directory", str(directory))),
        ]  # fmt: skip
        env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("COMFY", "AMQP_"))},
            "CMD": subprocess.list2cmdline(simulator),
            "COMFY_HOME": str(root),
            "COMFYUI_PORT_HOST": str(comfy_port),
            "INPUT_DIR": str(dirs["input"]),
            "OUTPUT_DIR": str(dirs["output"]),
            "TEMP_DIR": str(dirs["temp"]),
            "COMFYUI_API_HOME": str(root / "home"),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "LOG_LEVEL": "WARNING",
            "AMQP_URL": amqp_url,
            "AMQP_EXCHANGE_TOPIC": exchange,
            "INSTANCE_WORKFLOW_ID": queue_id,
            "HEARTBEAT_ENABLED": "false",
        }
        self._log = (root / "server.log").open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "comfyui_api", "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise SystemExit(f"a benchmark worker exited with {self.process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(self.url + "/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise SystemExit(f"a benchmark worker was not ready within {_START_TIMEOUT_S} s")

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        self._log.close()


async def _drain_rate(producer: TaskProducer, queue: str, tasks: int, checkpoint: str) -> float:
    """Tasks a second, from the first submit to the last outcome."""
    started = time.perf_counter()
    ids = [await producer.submit(queue, {"prompt": _graph(checkpoint, seed)}) for seed in range(tasks)]
    for task_id in ids:
        outcome = await producer.result(task_id, timeout_s=600)
        if outcome["event_type"] != "execution_success":
            raise SystemExit(f"benchmark task failed: {outcome['data']}")
    return tasks / (time.perf_counter() - started)


async def _overhead(worker: Worker, producer: TaskProducer, queue: str, checkpoint: str, n: int) -> tuple[float, float]:
    """Median ms of one job over HTTP (sync POST /prompt) and over the broker (submit -> outcome), alternating."""
    http_ms: list[float] = []
    amqp_ms: list[float] = []
    async with httpx.AsyncClient(base_url=worker.url, timeout=120) as http:
        for seed in range(n):
            started = time.perf_counter()
            (await http.post("/prompt", json={"prompt": _graph(checkpoint, 10_000 + seed)})).raise_for_status()
            http_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await producer.result(
                await producer.submit(queue, {"prompt": _graph(checkpoint, 20_000 + seed)}), timeout_s=120
            )
            amqp_ms.append((time.perf_counter() - started) * 1000)
    return statistics.median(http_ms), statistics.median(amqp_ms)


async def report_amqp(work: Path, amqp_url: str, checkpoint: str, tasks: int) -> None:
    print(f"\nscale-out over RabbitMQ ({STEPS} steps x {STEP_S * 1000:.0f} ms of simulated GPU time a task):")
    if not broker_reachable(amqp_url):
        print(f"  skipped: no broker answers at {amqp_url}")
        return
    run = uuid.uuid4().hex[:8]
    exchange, queue_id = f"bench.comfyui.{run}", f"bench-{run}"
    queue = f"q.workflow.{queue_id}"
    workers = [Worker(work, "amqp-worker-0", amqp_url, exchange, queue_id)]
    try:
        await workers[0].wait_ready()
        async with TaskProducer(amqp_url, exchange=exchange) as producer:
            await producer.result(await producer.submit(queue, {"prompt": _graph(checkpoint, 99)}), timeout_s=120)
            http_ms, amqp_ms = await _overhead(workers[0], producer, queue, checkpoint, 8)
            one = await _drain_rate(producer, queue, tasks // 3, checkpoint)
            workers += [Worker(work, f"amqp-worker-{n}", amqp_url, exchange, queue_id) for n in (1, 2)]
            await asyncio.gather(*(worker.wait_ready() for worker in workers[1:]))
            three = await _drain_rate(producer, queue, tasks, checkpoint)
        ratio = three / one
        print(f"  1 worker {one:5.2f} tasks/s   3 workers {three:5.2f} tasks/s   ratio {ratio:.2f}   (target >= 2.8)")
        print(f"  one task: HTTP {http_ms:7.1f} ms   broker {amqp_ms:7.1f} ms   overhead {amqp_ms - http_ms:+.1f} ms")
    finally:
        for worker in workers:
            worker.stop()
        with contextlib.suppress(Exception):
            import aio_pika

            connection = await aio_pika.connect_robust(amqp_url, timeout=10)
            async with connection:
                channel = await connection.channel()
                await channel.queue_delete(queue)
                await channel.exchange_delete(exchange)
