"""MAX_QUEUE_DEPTH: once that many jobs are live, /ready is 503 (queue_full) and new jobs get 503 + Retry-After."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from comfyui_api.version import package_version
from tests.integration.server import ServerProcess, image_graph, running_server, sampler_graph, wait_until


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path, env={"MAX_QUEUE_DEPTH": "1"})


async def test_full_queue_is_503_with_retry_after(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        slow = asyncio.create_task(client.post(server.url("/prompt"), json={"prompt": sampler_graph(1000), "id": "s"}))

        async def full() -> bool:
            return (await client.get(server.url("/ready"))).status_code == 503

        await wait_until(full, interval_s=0.02)
        ready = await client.get(server.url("/ready"))
        assert ready.json() == {
            "status": "not_ready", "phase": "queue_full", "queue_depth": 1, "max_queue_depth": 1,
            "version": package_version(),
        }  # fmt: skip
        refused = await client.post(server.url("/prompt"), json={"prompt": image_graph()})
        assert refused.status_code == 503
        assert refused.json()["error"]["type"] == "queue_full"
        assert int(refused.headers["retry-after"]) > 0
        assert (await client.post(server.url("/interrupt"), json={"id": "s"})).status_code == 200
        assert (await slow).status_code == 409
        accepted = await client.post(server.url("/prompt"), json={"prompt": image_graph()})
        assert accepted.status_code == 200
