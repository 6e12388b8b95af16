"""Warmup: reading the graph (file or URL on a loopback server), running it through a runner with outputs
discarded, and the state the app reads for /ready and the WARMUP_REQUIRED exit decision. The runner is faked: it is
this unit's edge."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from comfyui_api.errors import ComfyUnavailable, ExecutionFailed
from comfyui_api.jobs.model import EventSink, JobRequest, JobResult, Stats
from comfyui_api.jobs.warmup import Warmup
from comfyui_api.settings import WarmupSettings

GRAPH: dict[str, Any] = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 1, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl.safetensors"}},
    "5": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "second.safetensors"}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "warm"}},
}


class FakeRunner:
    """Plays `outcomes` in order: None completes the job, an exception fails it, "hang" never finishes."""

    def __init__(self, *outcomes: BaseException | str | None):
        self.outcomes = list(outcomes)
        self.requests: list[JobRequest] = []
        self.started = asyncio.Event()

    async def run(self, request: JobRequest, sink: EventSink) -> JobResult:
        self.requests.append(request)
        self.started.set()
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if outcome == "hang":
            await asyncio.Event().wait()
        if isinstance(outcome, BaseException):
            raise outcome
        return JobResult(id=request.id, graph=request.graph, outputs=[], texts=[], stats=Stats())


def warmup_from_file(tmp_path: Path, document: Any = GRAPH, **settings: Any) -> Warmup:
    path = tmp_path / "warmup.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return Warmup(WarmupSettings(prompt_file=path, **settings))


@pytest.fixture
async def graph_server() -> AsyncIterator[str]:
    """A loopback HTTP server: /graph.json serves GRAPH, /missing answers 404, /slow answers only at teardown."""
    release = asyncio.Event()

    async def graph(_: web.Request) -> web.Response:
        return web.json_response(GRAPH)

    async def slow(_: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/graph.json", graph)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        release.set()
        await runner.cleanup()


async def test_without_a_warmup_graph_it_is_disabled_and_ready() -> None:
    warmup = Warmup(WarmupSettings())
    runner = FakeRunner()

    state = await warmup.run(runner)

    assert (state.phase, warmup.is_ready, warmup.exit_required) == ("disabled", True, False)
    assert await warmup.load() is None
    assert runner.requests == []


async def test_a_successful_run_discards_outputs_and_reports_done(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path, timeout_s=120.0)
    runner = FakeRunner(None)
    assert (warmup.phase, warmup.is_ready) == ("pending", False)

    state = await warmup.run(runner)

    [request] = runner.requests
    assert request.discard_outputs is True
    assert request.graph == GRAPH
    assert request.timeout_s == 120.0
    assert request.id.startswith("warmup-")
    assert (state.phase, state.error, state.run_count) == ("done", None, 1)
    assert state.duration_s is not None and state.duration_s >= 0
    assert warmup.is_ready


async def test_the_first_checkpoint_of_the_graph_is_exposed_once_loaded(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path)
    assert warmup.checkpoint_name is None

    assert await warmup.load() == GRAPH

    assert warmup.checkpoint_name == "sdxl.safetensors"
    assert warmup.state().checkpoint_name == "sdxl.safetensors"


async def test_a_prompt_request_body_is_accepted_as_the_warmup_file(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path, {"prompt": GRAPH, "id": "ignored"})

    assert await warmup.load() == GRAPH


async def test_a_failed_run_keeps_the_error_and_is_not_ready(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    warmup = warmup_from_file(tmp_path)
    failure = ExecutionFailed("CUDA out of memory", node_id="3", node_type="KSampler", exception_type="OOM")

    with caplog.at_level(logging.ERROR, logger="comfyui_api.jobs.warmup"):
        state = await warmup.run(FakeRunner(failure))

    assert state.phase == "failed"
    assert state.error == "execution_failed: CUDA out of memory"
    assert (warmup.is_ready, warmup.exit_required) == (False, False)
    assert "warmup failed: execution_failed: CUDA out of memory" in caplog.text


async def test_warmup_required_turns_a_failure_into_an_exit_decision(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path, required=True)

    await warmup.run(FakeRunner(ComfyUnavailable("ComfyUI exited")))

    assert warmup.exit_required is True


async def test_a_rerun_after_a_failure_clears_the_error(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path, required=True)
    runner = FakeRunner(ComfyUnavailable("ComfyUI restarting"), None)

    first = await warmup.run(runner)
    second = await warmup.run(runner)

    assert (first.phase, second.phase) == ("failed", "done")
    assert (second.error, second.run_count, warmup.exit_required) == (None, 2, False)
    assert len(runner.requests) == 2
    assert runner.requests[0].id != runner.requests[1].id


async def test_reset_makes_a_finished_warmup_pending_until_the_next_run(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path)
    await warmup.run(FakeRunner(None))

    warmup.reset()

    assert (warmup.phase, warmup.is_ready) == ("pending", False)
    await warmup.run(FakeRunner(None))
    assert warmup.is_ready


async def test_a_run_that_never_ends_fails_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(GRAPH))
    warmup = Warmup(WarmupSettings(prompt_file=path, timeout_s=0.05), run_backstop_s=0.0)

    state = await warmup.run(FakeRunner("hang"))

    assert state.phase == "failed"
    assert state.error == "did not finish within WARMUP_TIMEOUT_S=0.05 s"


async def test_a_cancelled_run_goes_back_to_pending(tmp_path: Path) -> None:
    warmup = warmup_from_file(tmp_path)
    runner = FakeRunner("hang")
    task = asyncio.create_task(warmup.run(runner))
    await asyncio.wait_for(runner.started.wait(), timeout=10)
    assert warmup.phase == "running"

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert warmup.phase == "pending"


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{oops", "is not valid JSON"),
        ([1, 2], "must be an API-format graph"),
        ({"nodes": [{"id": 1}], "links": []}, "is a UI-format workflow; export it from ComfyUI with 'Export (API)'"),
        ({"1": {"inputs": {}}}, "node 1 has no class_type"),
    ],
)
async def test_an_unusable_file_fails_without_running(tmp_path: Path, document: Any, expected: str) -> None:
    warmup = warmup_from_file(tmp_path, document)
    runner = FakeRunner()

    assert await warmup.load() is None
    state = await warmup.run(runner)

    assert state.phase == "failed"
    assert state.error is not None
    assert state.error.startswith(f"WARMUP_PROMPT_FILE {tmp_path / 'warmup.json'}: ")
    assert expected in state.error
    assert runner.requests == []


async def test_a_missing_file_is_reported_with_its_path(tmp_path: Path) -> None:
    warmup = Warmup(WarmupSettings(prompt_file=tmp_path / "nope.json"))

    await warmup.load()

    assert warmup.phase == "failed"
    assert (
        warmup.state().error
        == f"WARMUP_PROMPT_FILE {tmp_path / 'nope.json'}: cannot be read: No such file or directory"
    )


async def test_the_graph_can_come_from_a_url(graph_server: str) -> None:
    warmup = Warmup(WarmupSettings(prompt_url=f"{graph_server}/graph.json"))
    runner = FakeRunner(None)

    state = await warmup.run(runner)

    assert state.phase == "done"
    assert runner.requests[0].graph == GRAPH
    assert warmup.checkpoint_name == "sdxl.safetensors"


async def test_a_url_that_fails_is_reported_without_its_query(graph_server: str) -> None:
    warmup = Warmup(WarmupSettings(prompt_url=f"{graph_server}/missing?token=secret"))

    await warmup.load()

    assert warmup.phase == "failed"
    error = warmup.state().error
    assert error == f"WARMUP_PROMPT_URL {graph_server}/missing: answered HTTP 404"


async def test_a_url_that_does_not_answer_times_out(graph_server: str) -> None:
    warmup = Warmup(WarmupSettings(prompt_url=f"{graph_server}/slow"), fetch_timeout_s=0.2)

    await warmup.load()

    assert warmup.phase == "failed"
    assert warmup.state().error == f"WARMUP_PROMPT_URL {graph_server}/slow: no complete answer within 0.2 s"


async def test_a_failed_load_is_retried_by_the_next_run(tmp_path: Path) -> None:
    path = tmp_path / "later.json"
    warmup = Warmup(WarmupSettings(prompt_file=path))
    await warmup.load()
    assert warmup.phase == "failed"

    path.write_text(json.dumps(GRAPH))
    state = await warmup.run(FakeRunner(None))

    assert state.phase == "done"
