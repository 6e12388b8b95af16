"""The real server with models: a manifest of local sources (a git repository and a wheel directory made here, model
files from a loopback server) applied at start and not fetched again on the next start; model URLs in loader
inputs downloaded once, placed where ComfyUI (the simulator) looks, pinned while in use and evicted LRU; and
POST /download. Each test starts its own server; the model server runs in the test's event loop, so every blocking
wait on the server process goes through a thread."""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.component.models.model_server import ModelServer, serve_models
from tests.component.models.test_models_provisioner import git, make_node_repo, make_wheel, venv_value
from tests.integration.server import (
    ServerProcess,
    make_server,
    sampler_graph,
    simulator_cmd,
    until_in_comfy_queue,
    wait_until,
)
from tests.servers.webhook_receiver import WebhookReceiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.simulator_only(reason="40-byte stand-in models, and manifests would install nodes into the checkout"),
]

MODEL_BYTES = 40


@pytest.fixture
async def models() -> AsyncIterator[ModelServer]:
    files = {f"/m/{name}.safetensors": name[0].encode() * MODEL_BYTES for name in ("alpha", "bravo", "charlie")}
    async with serve_models(ModelServer(files=files)) as running:
        yield running


async def start(server: ServerProcess) -> ServerProcess:
    server.start()
    await asyncio.to_thread(server.wait_ready)
    return server


async def stop(server: ServerProcess) -> int | None:
    return await asyncio.to_thread(server.stop)


async def ready_body(server: ServerProcess) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(server.url("/ready"))
    return response.status_code, response.json()


async def until_phase(server: ServerProcess, phase: str) -> dict[str, Any]:
    seen: list[str] = []

    async def reached() -> bool:
        try:
            _, body = await ready_body(server)
        except httpx.TransportError:
            return False
        seen.append(body["phase"])
        return body["phase"] == phase

    try:
        await wait_until(reached, timeout_s=30)
    except TimeoutError:
        raise AssertionError(f"/ready never said {phase!r}; it said {sorted(set(seen))}") from None
    return (await ready_body(server))[1]


async def comfy_models(server: ServerProcess, folder: str) -> list[str]:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{server.comfy_port}/models/{folder}")).json()


async def post(server: ServerProcess, path: str, body: Any, timeout_s: float = 30) -> httpx.Response:
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        return await client.post(server.url(path), json=body)


def url_graph(url: str, steps: int = 1) -> dict[str, Any]:
    graph = sampler_graph(steps)
    graph["4"]["inputs"]["ckpt_name"] = url
    return graph


def comfy_venv(path: Path) -> Path:
    """A venv for "ComfyUI" that sees the test environment's packages but installs into itself, so the manifest's
    pip steps never touch the environment the tests run in."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shared = sysconfig.get_paths()["purelib"]
    Path(purelib, "shared_site.pth").write_text(f"import site; site.addsitedir({shared!r})\n")
    return python


async def test_manifest_is_applied_before_start_and_not_fetched_again_on_the_next_start(
    models: ModelServer, tmp_path: Path
) -> None:
    late = ModelServer(files={"/m/late.safetensors": b"L" * MODEL_BYTES}, gate=asyncio.Event())
    models.gate = asyncio.Event()
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinypkg")
    make_wheel(wheels, "nodedep")
    repo = tmp_path / "src" / "ComfyUI-Tiny"
    commits = make_node_repo(repo, f"--no-index\n--find-links {wheels}\nnodedep\n")
    python = comfy_venv(tmp_path / "venv")
    async with serve_models(late):
        manifest = {
            "pip": ["--no-index", f"--find-links {wheels}", "tinypkg"],
            "custom_nodes": [f"file://{repo}@v1"],
            "models": {
                "before_start": [
                    {"url": models.url("/m/alpha.safetensors"), "local_path": "checkpoints/base.safetensors"}
                ],
                "after_start": [{"url": late.url("/m/late.safetensors"), "local_path": "loras/late.safetensors"}],
            },
        }
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))

        def configured() -> ServerProcess:
            server = make_server(tmp_path / "run", env={"MANIFEST": str(tmp_path / "manifest.json")})
            command = [str(python), *simulator_cmd(server.comfy_port, server.dirs, step_seconds=0.01)[1:]]
            server.env["CMD"] = shlex.join(command)
            return server

        server = configured().start()
        try:
            await until_phase(server, "provisioning")  # the before_start model is held back by the model server
            models.gate.set()
            pending = await until_phase(server, "models_pending")  # ComfyUI is up; the after_start model is held
            assert pending["models"]["pending"] == [
                {
                    "url": late.url("/m/late.safetensors"),
                    "local_path": str(server.dirs.models / "loras" / "late.safetensors"),
                }
            ]
            late.gate.set()
            await asyncio.to_thread(server.wait_ready)
            status, body = await ready_body(server)
            assert status == 200 and body["models"]["pending"] == [] and len(body["models"]["done"]) == 1
            assert venv_value(python, "tinypkg") == "0.1.0" and venv_value(python, "nodedep") == "0.1.0"
            assert git(server.dirs.root / "custom_nodes" / "ComfyUI-Tiny", "rev-parse", "HEAD") == commits["v1"]
            assert (server.dirs.models / "checkpoints" / "base.safetensors").read_bytes() == b"a" * MODEL_BYTES
            assert "base.safetensors" in await comfy_models(server, "checkpoints")
            assert "late.safetensors" in await comfy_models(server, "loras")
        finally:
            await stop(server)
        assert (models.gets["/m/alpha.safetensors"], late.gets["/m/late.safetensors"]) == (1, 1)

        shutil.rmtree(wheels)  # a second start that tried to fetch anything would now fail
        shutil.rmtree(repo)
        first_log = server.logs()
        server = await start(configured())
        try:
            status, body = await ready_body(server)
            assert status == 200 and len(body["models"]["done"]) == 1
        finally:
            await stop(server)
    assert (models.gets["/m/alpha.safetensors"], late.gets["/m/late.safetensors"]) == (1, 1)
    second_log = server.logs()[len(first_log) :]
    assert "manifest custom_nodes[0]: skipped" in second_log
    assert "manifest models.before_start[0]: skipped" in second_log
    assert "manifest models.after_start[0]: skipped" in second_log


async def test_a_model_url_in_a_loader_is_downloaded_once_for_concurrent_jobs_and_placed_for_comfyui(
    models: ModelServer, tmp_path: Path
) -> None:
    server = await start(make_server(tmp_path))
    try:
        url = models.url("/m/alpha.safetensors")
        models.gate = asyncio.Event()
        jobs = [
            asyncio.create_task(post(server, "/prompt", {"prompt": url_graph(url), "id": f"job-{n}"})) for n in (1, 2)
        ]
        await models.wait_for_request()

        async def both_admitted() -> bool:
            return (await ready_body(server))[1]["queue_depth"] == 2

        await wait_until(both_admitted)
        models.gate.set()
        responses = await asyncio.gather(*jobs)
        for response in responses:
            assert response.status_code == 200, response.text
            assert response.json()["prompt"]["4"]["inputs"]["ckpt_name"] == "alpha.safetensors"
        assert models.gets["/m/alpha.safetensors"] == 1
        assert (server.dirs.models / "checkpoints" / "alpha.safetensors").read_bytes() == b"a" * MODEL_BYTES
        assert "alpha.safetensors" in await comfy_models(server, "checkpoints")

        again = await post(server, "/prompt", {"prompt": url_graph(url)})
        assert again.status_code == 200, again.text
        assert models.gets["/m/alpha.safetensors"] == 1  # served from the cache

        missing = await post(server, "/prompt", {"prompt": url_graph(models.url("/m/nothing.safetensors"))})
        assert missing.status_code == 400, missing.text
        assert missing.json()["error"]["field"] == "prompt.4.inputs.ckpt_name"
    finally:
        await stop(server)


async def test_the_lru_limit_evicts_the_oldest_unused_model_and_never_one_in_use(
    models: ModelServer, tmp_path: Path
) -> None:
    limit_bytes = 2 * MODEL_BYTES + MODEL_BYTES // 2  # room for two models, not three
    receiver = await WebhookReceiver().start()
    env = {
        "LRU_CACHE_SIZE_GB": repr(limit_bytes / 1024**3),
        "SYSTEM_WEBHOOK_URL": receiver.url("/system"),
        "SYSTEM_WEBHOOK_EVENTS": "file_deleted,file_downloaded",
        "SYSTEM_WEBHOOK_FLUSH_S": "0.05",
    }
    server = await start(make_server(tmp_path, env=env, step_seconds=0.05))
    checkpoints = server.dirs.models / "checkpoints"

    async def download_by_job(name: str) -> None:
        """A job that downloads the model, then is refused by ComfyUI (steps=0): it ends at once, unlike a job
        queued behind the holder, and leaves its model cached and unused."""
        response = await post(server, "/prompt", {"prompt": url_graph(models.url(f"/m/{name}.safetensors"), steps=0)})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "workflow_rejected"

    try:
        holder_graph = url_graph(models.url("/m/alpha.safetensors"), steps=2000)
        holder = asyncio.create_task(post(server, "/prompt", {"prompt": holder_graph, "id": "holder"}))
        await until_in_comfy_queue(server.comfy_port, "holder")  # alpha is in use from now on
        await download_by_job("bravo")
        await download_by_job("charlie")  # over the limit: alpha is the oldest, but in use, so bravo goes
        assert (checkpoints / "alpha.safetensors").exists()
        assert not (checkpoints / "bravo.safetensors").exists()
        assert (checkpoints / "charlie.safetensors").exists()
        assert f"evicted model {models.url('/m/bravo.safetensors')}" in server.logs()
        assert "bravo.safetensors" not in await comfy_models(server, "checkpoints")
        assert models.gets["/m/alpha.safetensors"] == 1
        events = [request.json() for request in await receiver.wait_for(4, path="/system")]
        assert [(e["event"], e["data"]["url"].rsplit("/", 1)[-1]) for e in events] == [
            ("storage.file_downloaded", "alpha.safetensors"),
            ("storage.file_downloaded", "bravo.safetensors"),
            ("storage.file_downloaded", "charlie.safetensors"),
            ("storage.file_deleted", "bravo.safetensors"),
        ]
        assert events[3]["data"]["size"] == MODEL_BYTES

        interrupted = await post(server, "/interrupt", {"id": "holder"})
        assert interrupted.json() == {"id": "holder", "status": "interrupted"}
        assert (await asyncio.wait_for(holder, 10)).status_code == 409
        await download_by_job("bravo")  # alpha was released when its job ended, and is now the oldest
        assert models.gets["/m/bravo.safetensors"] == 2
        assert not (checkpoints / "alpha.safetensors").exists()
        assert (checkpoints / "bravo.safetensors").exists() and (checkpoints / "charlie.safetensors").exists()
    finally:
        await stop(server)
        await receiver.close()


async def test_post_download(models: ModelServer, tmp_path: Path) -> None:
    server = await start(make_server(tmp_path))
    loras = server.dirs.models / "loras"
    try:
        url = models.url("/m/alpha.safetensors")
        started = await post(server, "/download", {"url": url, "model_type": "loras", "filename": "mine.safetensors"})
        assert started.status_code == 202, started.text
        assert started.json() == {
            "url": url,
            "model_type": "loras",
            "filename": "mine.safetensors",
            "status": "started",
        }

        async def placed() -> bool:
            return (loras / "mine.safetensors").exists()

        await wait_until(placed)
        assert "mine.safetensors" in await comfy_models(server, "loras")

        done = await post(
            server, "/download", {"url": models.url("/m/bravo.safetensors"), "model_type": "vae", "wait": True}
        )
        assert done.status_code == 200, done.text
        body = done.json()
        assert {k: body[k] for k in ("model_type", "filename", "status", "size")} == {
            "model_type": "vae",
            "filename": "bravo.safetensors",
            "status": "completed",
            "size": MODEL_BYTES,
        }
        assert body["duration"] >= 0
        assert (server.dirs.models / "vae" / "bravo.safetensors").read_bytes() == b"b" * MODEL_BYTES

        for bad, field in [
            ({"url": url, "model_type": "nonsense"}, "model_type"),
            ({"url": "ftp://example.com/x.safetensors", "model_type": "loras"}, "url"),
            ({"model_type": "loras"}, "url"),
            ({"url": url, "model_type": "loras", "wait": "yes"}, "wait"),
            ({"url": url, "model_type": "loras", "filename": "../escape.safetensors"}, "filename"),
            ({"url": url, "model_type": "loras", "filename": "é" * 128 + ".safetensors"}, "filename"),  # > 255 bytes
            ({"url": url, "model_type": "loras", "filename": "NUL.safetensors"}, "filename"),
            ({"url": url, "model_type": "loras", "colour": "red"}, "colour"),
        ]:
            refused = await post(server, "/download", bad)
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["error"]["field"] == field, refused.text

        failed = await post(
            server, "/download", {"url": models.url("/m/none.safetensors"), "model_type": "loras", "wait": True}
        )
        assert failed.status_code == 400, failed.text
        error = failed.json()["error"]
        assert (error["type"], error["field"]) == ("input_staging_failed", "url")
        assert "404" in error["message"]
        assert not (loras / "none.safetensors").exists()
    finally:
        await stop(server)


async def test_an_invalid_manifest_is_refused_before_anything_starts(tmp_path: Path) -> None:
    manifest = {"custom_nodes": ["not a node!"]}
    server = make_server(tmp_path, env={"MANIFEST_JSON": json.dumps(manifest)}).start()
    try:
        assert await asyncio.to_thread(server.wait_exit, 30) == 2
        assert "MANIFEST_JSON: custom_nodes[0]: 'not a node!' is neither" in server.logs()
    finally:
        await stop(server)


async def test_a_failing_manifest_step_stops_the_server_naming_the_entry(tmp_path: Path) -> None:
    manifest = {"custom_nodes": [f"file://{tmp_path / 'no-such-repo'}@v1"]}
    server = make_server(tmp_path, env={"MANIFEST_JSON": json.dumps(manifest)}).start()
    try:
        assert await asyncio.to_thread(server.wait_exit, 60) == 1
        logs = server.logs()
        assert "the manifest could not be applied: custom_nodes[0]:" in logs
        assert "ComfyUI is ready" not in logs
    finally:
        await stop(server)
