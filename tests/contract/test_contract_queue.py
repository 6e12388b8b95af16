"""Queue, history, interrupt and free: shapes, delete/clear semantics, pagination, interrupting a running job."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.contract.graphs import make_invert_graph, make_txt2img_graph, unique_token
from tests.contract.harness import (
    MODEL_RUN_TIMEOUT_S,
    Target,
    WsClient,
    first_checkpoint,
    frame_types,
    open_ws,
    queue_prompt,
    wait_history,
    wait_idle,
)

SERVER_TROUBLE = "500 Internal Server Error\n\nServer got itself in trouble"
# Enough sampler steps that the job is still running when the test acts on it (the real one takes ~1 s a step
# at 64x64 on CPU, the simulator 0.25 s); the job is always interrupted, so they are never all run.
SLOW_STEPS = 60
# A real ComfyUI loads the checkpoint on first use (12 s alone, more on a busy machine).
MODEL_TEST_TIMEOUT_S = 300


async def needs_checkpoint(http: httpx.AsyncClient) -> str:
    checkpoint = await first_checkpoint(http)
    if checkpoint is None:
        pytest.skip("no checkpoint in models/checkpoints: a slow KSampler job is needed to hold the queue")
    return checkpoint


async def start_slow_job(http: httpx.AsyncClient, ws: WsClient, checkpoint: str) -> str:
    """Queue a long KSampler job and return once its first sampler step was reported."""
    graph = make_txt2img_graph(checkpoint, "contract_slow_" + unique_token(), random.randrange(1 << 30), SLOW_STEPS)
    prompt_id = await queue_prompt(http, graph, ws.client_id)
    await ws.recv_type("progress", MODEL_RUN_TIMEOUT_S)
    return prompt_id


async def wait_status(ws: WsClient, queue_remaining: int, timeout_s: float = 5.0) -> None:
    """Read frames until a status frame reports queue_remaining (earlier status frames are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        frame = await ws.recv_type("status", max(deadline - asyncio.get_running_loop().time(), 0.001))
        assert isinstance(frame, dict)
        if frame["data"]["status"]["exec_info"]["queue_remaining"] == queue_remaining:
            return


@contextlib.asynccontextmanager
async def slow_job_stopped_afterwards(http: httpx.AsyncClient) -> AsyncIterator[None]:
    """Whatever the test asserts, leave the target idle: clear the queue and interrupt the slow job."""
    try:
        yield
    finally:
        await http.post("/queue", json={"clear": True})
        await http.post("/interrupt")
        await wait_idle(http)


def assert_queue_item(item: list[Any], prompt_id: str, client_id: str | None) -> None:
    assert len(item) == 5
    number, item_id, graph, extra_data, outputs = item
    assert isinstance(number, int | float) and item_id == prompt_id
    assert isinstance(graph, dict) and isinstance(outputs, list)
    if client_id is not None:
        assert extra_data["client_id"] == client_id


@pytest.mark.timeout(MODEL_TEST_TIMEOUT_S)
async def test_queue_delete_clear_and_interrupt(target: Target, http: httpx.AsyncClient) -> None:
    checkpoint = await needs_checkpoint(http)
    await wait_idle(http)
    async with slow_job_stopped_afterwards(http), open_ws(target) as ws:
        running_id = await start_slow_job(http, ws, checkpoint)
        pending = [await queue_prompt(http, make_invert_graph("contract_q_" + unique_token())) for _ in range(3)]
        await wait_status(ws, 4)  # the status frame of the last POST
        queue = (await http.get("/queue")).json()
        assert set(queue) == {"queue_running", "queue_pending"}
        [running] = queue["queue_running"]
        assert_queue_item(running, running_id, ws.client_id)
        assert sorted(item[1] for item in queue["queue_pending"]) == sorted(pending)
        ordered = [item[1] for item in sorted(queue["queue_pending"], key=lambda item: item[0])]
        assert ordered == pending, "sorting by number gives submission order"
        assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 4}}

        deleted = await http.post("/queue", json={"delete": [pending[0], "contract-unknown", running_id]})
        assert (deleted.status_code, deleted.content) == (200, b"")
        await wait_status(ws, 3)  # an effective delete broadcasts the new queue size
        queue = (await http.get("/queue")).json()
        assert sorted(item[1] for item in queue["queue_pending"]) == sorted(pending[1:])
        assert [item[1] for item in queue["queue_running"]] == [running_id], "the running job is not deleted"

        cleared = await http.post("/queue", json={"clear": True})
        assert (cleared.status_code, cleared.content) == (200, b"")
        assert (await http.get("/queue")).json()["queue_pending"] == []

        ignored = await http.post("/interrupt", json={"prompt_id": "contract-not-running"})
        assert (ignored.status_code, ignored.content) == (200, b"")
        await asyncio.sleep(0.5)
        assert [item[1] for item in (await http.get("/queue")).json()["queue_running"]] == [running_id]

        interrupted = await http.post("/interrupt", json={"prompt_id": running_id})
        assert (interrupted.status_code, interrupted.content) == (200, b"")
        frames = await ws.collect_run(running_id, MODEL_RUN_TIMEOUT_S)
    assert frame_types(frames)[-3:] == ["execution_interrupted", "status", "executing"]
    data = frames[-3]["data"]
    assert set(data) == {"prompt_id", "node_id", "node_type", "executed", "timestamp"}
    assert (data["prompt_id"], data["node_id"], data["node_type"]) == (running_id, "3", "KSampler")
    history = await wait_history(http, running_id)
    assert (history["status"]["status_str"], history["status"]["completed"], history["outputs"]) == (
        "error", False, {})  # fmt: skip
    assert history["status"]["messages"][-1][0] == "execution_interrupted"
    for prompt_id in pending:
        assert (await http.get(f"/history/{prompt_id}")).json() == {}, "deleted and cleared prompts never ran"


@pytest.mark.timeout(MODEL_TEST_TIMEOUT_S)
async def test_global_interrupt_without_body(target: Target, http: httpx.AsyncClient) -> None:
    checkpoint = await needs_checkpoint(http)
    await wait_idle(http)
    async with slow_job_stopped_afterwards(http), open_ws(target) as ws:
        running_id = await start_slow_job(http, ws, checkpoint)
        response = await http.post("/interrupt")
        assert (response.status_code, response.content) == (200, b"")
        frames = await ws.collect_run(running_id, MODEL_RUN_TIMEOUT_S)
    assert "execution_interrupted" in frame_types(frames)


async def test_free_flags_and_bodiless_free(http: httpx.AsyncClient) -> None:
    for body in ({"unload_models": True}, {"free_memory": True}):
        response = await http.post("/free", json=body)
        assert (response.status_code, response.content) == (200, b"")
    bare = await http.post("/free")
    assert bare.status_code == 500
    assert bare.text == SERVER_TROUBLE


async def test_queue_with_bad_json_is_text_500(http: httpx.AsyncClient) -> None:
    response = await http.post("/queue", content=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 500 and response.text == SERVER_TROUBLE


async def run_three(http: httpx.AsyncClient) -> list[str]:
    ids = []
    for _ in range(3):
        prompt_id = await queue_prompt(http, make_invert_graph("contract_hist_" + unique_token()))
        await wait_history(http, prompt_id)
        ids.append(prompt_id)
    return ids


async def test_history_entry_shape(http: httpx.AsyncClient) -> None:
    prefix = "contract_entry_" + unique_token()
    prompt_id = await queue_prompt(http, make_invert_graph(prefix), "contract-history")
    entry = await wait_history(http, prompt_id)
    assert set(entry) == {"prompt", "outputs", "status", "meta"}
    assert entry["outputs"] == {"3": {"images": [{"filename": f"{prefix}_00001_.png", "subfolder": "",
                                                 "type": "output"}]}}  # fmt: skip
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    messages = entry["status"]["messages"]
    assert [name for name, _ in messages] == ["execution_start", "execution_cached", "execution_success"]
    assert all(payload["prompt_id"] == prompt_id and "timestamp" in payload for _, payload in messages)
    assert entry["meta"] == {"3": {"node_id": "3", "display_node": "3", "parent_node": None, "real_node_id": "3"}}
    whole = (await http.get(f"/history/{prompt_id}")).json()
    assert list(whole) == [prompt_id]


async def test_history_pagination_delete_and_clear(http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    ours = await run_three(http)
    everything = list((await http.get("/history")).json())
    assert everything[-3:] == ours, "history is in completion order"
    assert list((await http.get("/history", params={"max_items": 2})).json()) == ours[1:]
    offset = len(everything) - 3
    assert list((await http.get("/history", params={"offset": offset})).json()) == ours
    assert list((await http.get("/history", params={"offset": offset, "max_items": 2})).json()) == ours[:2]

    assert list((await http.get("/history", params={"max_items": len(everything) + 5})).json()) == everything
    assert (await http.get("/history", params={"max_items": 0})).json() == {}
    assert (await http.get("/history", params={"offset": len(everything)})).json() == {}
    not_a_number = await http.get("/history", params={"max_items": "abc"})
    assert (not_a_number.status_code, not_a_number.text) == (500, SERVER_TROUBLE)

    deleted = await http.post("/history", json={"delete": [ours[1], "contract-unknown"]})
    assert (deleted.status_code, deleted.content) == (200, b"")
    assert (await http.get(f"/history/{ours[1]}")).json() == {}
    assert list((await http.get("/history", params={"max_items": 2})).json()) == [ours[0], ours[2]]

    cleared = await http.post("/history", json={"clear": True})
    assert (cleared.status_code, cleared.content) == (200, b"")
    assert (await http.get("/history")).json() == {}


@pytest.mark.timeout(MODEL_TEST_TIMEOUT_S)
async def test_front_prompt_runs_before_earlier_pending_ones(target: Target, http: httpx.AsyncClient) -> None:
    checkpoint = await needs_checkpoint(http)
    await wait_idle(http)
    async with slow_job_stopped_afterwards(http), open_ws(target) as ws:
        running_id = await start_slow_job(http, ws, checkpoint)
        back = await queue_prompt(http, make_invert_graph("contract_back_" + unique_token()))
        front = await queue_prompt(http, make_invert_graph("contract_front_" + unique_token()), front=True)
        await http.post("/interrupt")
        await wait_history(http, back)
    order = list((await http.get("/history", params={"max_items": 3})).json())
    assert order == [running_id, front, back]


@pytest.mark.timeout(MODEL_TEST_TIMEOUT_S)
async def test_reconnecting_mid_run_gets_the_current_node(target: Target, http: httpx.AsyncClient) -> None:
    checkpoint = await needs_checkpoint(http)
    await wait_idle(http)
    client_id = "contract-reconnect-" + unique_token()
    async with slow_job_stopped_afterwards(http):
        async with open_ws(target, client_id) as first:
            running_id = await start_slow_job(http, first, checkpoint)
        async with open_ws(target, client_id) as second:
            connect_frames = [*second.connect_frames, await second.recv_type("executing", 5.0)]
            assert connect_frames[0]["data"]["sid"] == client_id
            assert connect_frames[1] == {"type": "executing", "data": {"node": "3"}}, "the node that is running now"
            await http.post("/interrupt")
            frames = await second.collect_run(running_id, MODEL_RUN_TIMEOUT_S)
    assert "execution_interrupted" in frame_types(frames), "the new socket receives the rest of the run"


async def test_history_drops_comfy_org_credentials(http: httpx.AsyncClient) -> None:
    extra = {"auth_token_comfy_org": "secret-token", "api_key_comfy_org": "secret-key", "kept": 1}
    graph = make_invert_graph("contract_secret_" + unique_token())
    entry = await wait_history(http, await queue_prompt(http, graph, "contract-secret", extra_data=extra))
    kept = {key: value for key, value in entry["prompt"][3].items() if key != "create_time"}  # 0.33 adds it
    assert kept == {"kept": 1, "client_id": "contract-secret"}


@pytest.mark.timeout(MODEL_TEST_TIMEOUT_S)
async def test_without_client_id_progress_and_interrupt_are_broadcast(target: Target, http: httpx.AsyncClient) -> None:
    checkpoint = await needs_checkpoint(http)
    await wait_idle(http)
    async with slow_job_stopped_afterwards(http), open_ws(target) as observer:
        graph = make_txt2img_graph(
            checkpoint, "contract_bcast_" + unique_token(), random.randrange(1 << 30), SLOW_STEPS
        )
        prompt_id = await queue_prompt(http, graph)
        progress = await observer.recv_type("progress", MODEL_RUN_TIMEOUT_S)
        assert progress["data"]["prompt_id"] == prompt_id and progress["data"]["node"] == "3"
        await http.post("/interrupt")
        seen: list[Any] = []
        while not seen or frame_types(seen)[-1] != "execution_interrupted":
            seen.append(await observer.recv(MODEL_RUN_TIMEOUT_S))
        assert seen[-1]["data"]["prompt_id"] == prompt_id
        await wait_history(http, prompt_id)
        seen += await observer.drain(0.5)
    assert set(frame_types(seen)) <= {"status", "progress", "progress_state", "execution_interrupted"}
    assert frame_types(seen).count("execution_interrupted") == 1, "no executing/terminal frames without a client_id"
