"""JOB_STORE=sqlite against the real server process: records and kept outputs survive a restart, a job running when
the server was killed (SIGKILL) is failed with a reason that says so and its webhook is sent after the restart, and
a webhook still pending at SIGTERM is delivered by the next start."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server import (
    ServerProcess,
    image_graph,
    make_server,
    sampler_graph,
    until_in_comfy_queue,
    wait_until,
)
from tests.servers.webhook_receiver import Reply, WebhookReceiver

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]


def journaled(tmp_path: Path, **env: str) -> ServerProcess:
    return make_server(
        tmp_path,
        env={"JOB_STORE": f"sqlite:///{tmp_path / 'state' / 'jobs.db'}", "WEBHOOK_BACKOFF_BASE_S": "0.05", **env},
    )


async def get_job(server: ServerProcess, job_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(server.url(f"/jobs/{job_id}"))
        assert response.status_code == 200, response.text
        return dict(response.json())


async def started(server: ServerProcess) -> ServerProcess:
    server.start()
    await asyncio.to_thread(server.wait_ready)
    return server


async def test_records_and_outputs_survive_a_restart(tmp_path: Path) -> None:
    server = await started(journaled(tmp_path))
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(server.url("/prompt"), json={"prompt": image_graph(0x00FF00), "id": "kept"})
            assert response.status_code == 200
            before = await get_job(server, "kept")
            image = (await client.get(server.url(before["outputs"][0]["url"]))).content
    finally:
        await asyncio.to_thread(server.stop)
    server = await started(server)
    try:
        after = await get_job(server, "kept")
        assert after == before
        async with httpx.AsyncClient(timeout=30) as client:
            assert (await client.get(server.url(after["outputs"][0]["url"]))).content == image
    finally:
        await asyncio.to_thread(server.stop)


async def test_a_job_killed_with_the_server_is_failed_and_reported_after_the_restart(tmp_path: Path) -> None:
    async with WebhookReceiver() as receiver:
        server = await started(journaled(tmp_path))
        body = {
            "prompt": sampler_graph(400, seed=3),
            "id": "killed",
            "webhook_v2": receiver.url(),
            "metadata": {"k": 1},
        }
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                assert (await client.post(server.url("/prompt"), json=body)).status_code == 202
            await until_in_comfy_queue(server.comfy_port, "killed")
        finally:
            children = server.comfy_processes()
            server.signal(signal.SIGKILL)
            await asyncio.to_thread(server.wait_exit)
            for child in children:  # ComfyUI would outlive a killed server: it holds the port
                child.kill()
        assert receiver.received() == []
        server = await started(server)
        try:
            record = await get_job(server, "killed")
            assert record["status"] == "failed"
            assert "the server stopped while job killed was" in record["error"]["message"]
            assert record["metadata"] == {"k": 1}
            [hook] = await receiver.wait_for(1, timeout_s=20)
            payload = hook.json()
            assert (payload["type"], payload["id"]) == ("prompt.failed", "killed")
            assert "the server stopped" in payload["error"]

            async def delivered() -> bool:
                return bool((await get_job(server, "killed"))["webhook"]["state"] == "delivered")

            await wait_until(delivered, timeout_s=10)
        finally:
            await asyncio.to_thread(server.stop)


async def test_a_webhook_pending_at_sigterm_is_delivered_after_the_restart(tmp_path: Path) -> None:
    async with WebhookReceiver() as receiver:
        receiver.script("/slow", Reply(hang=True))  # the first attempt never ends; later ones get 200
        server = await started(journaled(tmp_path, WEBHOOK_TIMEOUT_S="120"))
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                body = {"prompt": image_graph(), "id": "outbox", "webhook_v2": receiver.url("/slow")}
                assert (await client.post(server.url("/prompt"), json=body)).status_code == 202
            await receiver.wait_for(1, path="/slow", timeout_s=20)  # the delivery hangs
            assert (await get_job(server, "outbox"))["webhook"]["state"] == "pending"
        finally:
            assert await asyncio.to_thread(server.stop) == 0
        server = await started(server)
        try:
            requests = await receiver.wait_for(2, path="/slow", timeout_s=20)
            assert requests[-1].answered_with == 200 and requests[-1].json()["type"] == "prompt.complete"

            async def delivered() -> bool:
                return bool((await get_job(server, "outbox"))["webhook"]["state"] == "delivered")

            await wait_until(delivered, timeout_s=10)
        finally:
            await asyncio.to_thread(server.stop)


def test_a_bad_job_store_is_a_settings_error(tmp_path: Path) -> None:
    from comfyui_api.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="JOB_STORE"):
        load_settings({"JOB_STORE": "postgres://x", "COMFYUI_API_HOME": str(tmp_path)})
