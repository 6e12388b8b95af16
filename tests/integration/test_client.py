"""The Python client against a real server (simulator as ComfyUI): run with --set style edits and a local input
file, submit + events + wait + download, events resumed across a dropped connection with nothing lost or repeated,
cancel, typed errors naming the field, and API keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from comfyui_api.client import ApiError, AsyncClient, Client, JobFailed
from tests.integration.proxy import TcpProxy
from tests.integration.server import (
    ServerProcess,
    image_graph,
    load_image_graph,
    png_bytes,
    running_server,
    sampler_graph,
)

pytestmark = [pytest.mark.slow]

API_KEY = "client-test-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("client"), env={"API_KEYS": API_KEY})


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Client]:
    with Client(server.base_url, api_key=API_KEY, environ={}) as client:
        yield client


def test_run_with_edits_and_a_local_input(client: Client, tmp_path: Path) -> None:
    result = client.run(image_graph(), set={"1.inputs.width": 24, "9.filename_prefix": "edited"}, timeout=60)
    [output] = result.outputs
    assert (output.kind, output.content_type, output.data[:8]) == ("image", "image/png", b"\x89PNG\r\n\x1a\n")
    assert "edited" in output.filename
    picture = tmp_path / "green.png"
    picture.write_bytes(png_bytes((10, 200, 30)))
    loaded = client.run(load_image_graph("placeholder.png"), inputs={"1.image": picture}, id="client-input")
    assert loaded.id == "client-input" and loaded.outputs[0].data is not None


def test_submit_follow_wait_and_download(client: Client, tmp_path: Path) -> None:
    job = client.submit(sampler_graph(20), metadata={"who": "client-test"})
    assert job.status in ("queued", "running")
    names = [event.name for event in client.events(job.id)]
    assert names[-1] == "complete" and "progress" in names
    done = client.wait(job.id)
    assert (done.status, done.metadata) == ("completed", {"who": "client-test"})
    [path] = client.download(done, tmp_path / "out")
    assert (
        path.read_bytes()
        == httpx.get(
            f"{client.base_url}/jobs/{job.id}/outputs/0", headers={"Authorization": f"Bearer {API_KEY}"}
        ).content
    )
    assert client.get(job.id).outputs[0].filename == path.name
    assert any(listed.id == job.id for listed in client.list(limit=50).jobs)


async def test_events_resume_after_a_dropped_connection(server: ServerProcess) -> None:
    async with TcpProxy(server.port) as proxy, AsyncClient(f"http://127.0.0.1:{proxy.port}", api_key=API_KEY) as client:
        job = await client.submit(sampler_graph(60, seed=11))
        seen = []
        async for event in client.events(job.id):
            seen.append(event)
            if len(seen) == 4:
                await proxy.cut()  # the stream breaks mid-job; the client reconnects with Last-Event-ID
        assert proxy.cut_count >= 1
        whole = [event async for event in client.events(job.id)]  # the ended job's stream, replayed in one go
    ids = [int(event.id) for event in seen if event.id is not None]
    # Every event once, in order, none missing: what the broken-up reading saw is the whole story. (Ids are the job
    # log's sequence numbers; events the stream does not show leave gaps.)
    assert ids == [int(event.id) for event in whole if event.id is not None]
    assert ids == sorted(set(ids)) and len(ids) > 10
    assert seen[-1].name == "complete" and sum(event.terminal for event in seen) == 1


def test_cancel_and_a_failed_wait(client: Client) -> None:
    job = client.submit(sampler_graph(2000, seed=5))
    assert client.cancel(job.id) is True
    with pytest.raises(JobFailed) as failed:
        client.wait(job.id, raise_on_failure=True)
    assert (failed.value.job_id, failed.value.type) == (job.id, "cancelled")
    assert client.get(job.id).status == "cancelled"
    assert client.cancel(job.id) is False


def test_errors_are_typed_and_name_the_field(client: Client, server: ServerProcess) -> None:
    with pytest.raises(ApiError) as refused:
        client.run({"1": {"class_type": "LoadImage", "inputs": {"image": "../../etc/passwd"}}})
    assert (refused.value.status, refused.value.field) == (400, "prompt.1.inputs.image")
    with pytest.raises(ApiError) as unknown:
        client.get("no-such-job")
    assert (unknown.value.status, unknown.value.type) == (404, "job_not_found")
    with Client(server.base_url, environ={}) as anonymous, pytest.raises(ApiError) as unauthorised:
        anonymous.list()
    assert unauthorised.value.status == 401


def test_the_environment_names_the_server_and_key(server: ServerProcess) -> None:
    environ = {"COMFYUI_API_URL": server.base_url, "COMFYUI_API_KEY": API_KEY}
    with Client(environ=environ) as client:
        assert client.base_url == server.base_url
        assert client.list(limit=1).jobs is not None


async def test_the_async_client_runs_too(server: ServerProcess) -> None:
    async with AsyncClient(server.base_url, api_key=API_KEY, environ={}) as client:
        result = await client.run(image_graph(0x00FF00))
        assert result.outputs[0].data is not None
        job = await client.submit(image_graph())
        assert (await client.wait(job.id)).status == "completed"
        assert await asyncio.wait_for(client.cancel(job.id), 10) is False
