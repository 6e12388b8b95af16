"""/ws: the connect frame, the feature_flags handshake, exact frame order of runs, routing and clientId quirks."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx

from tests.contract.graphs import files_in, make_invert_graph, make_load_image_graph, unique_token
from tests.contract.harness import Target, frame_types, open_ws, queue_prompt, upload, wait_history, wait_idle
from tests.contract.test_contract_http import server_features

SUCCESS_ORDER = [
    "status", "status", "execution_start", "execution_cached",
    "progress_state", "executing",
    "progress_state", "progress_state", "executing",
    "progress_state", "progress_state", "executing", "executed", "progress_state",
    "execution_success", "status", "executing",
]  # fmt: skip
CACHED_ORDER = ["status", "status", "execution_start", "execution_cached", "executed", "progress_state",
                "execution_success", "status", "executing"]  # fmt: skip
ERROR_ORDER = ["status", "status", "execution_start", "execution_cached", "progress_state", "executing",
               "execution_error", "status", "executing"]  # fmt: skip
PER_PROMPT_TYPES = {"executing", "executed", "execution_start", "execution_cached", "execution_success",
                    "execution_error"}  # fmt: skip
PROGRESS_NODE_KEYS = {"value", "max", "state", "node_id", "prompt_id", "display_node_id", "parent_node_id",
                      "real_node_id"}  # fmt: skip


def data_of(frames: list[Any], frame_type: str) -> list[dict[str, Any]]:
    return [frame["data"] for frame in frames if isinstance(frame, dict) and frame["type"] == frame_type]


async def test_connect_frame_carries_the_client_id(target: Target) -> None:
    async with open_ws(target, "contract-sid-" + unique_token()) as ws:
        [frame] = ws.connect_frames
        assert frame["type"] == "status"
        assert set(frame["data"]) == {"status", "sid"}
        assert frame["data"]["sid"] == ws.client_id
        assert set(frame["data"]["status"]) == {"exec_info"}
        assert isinstance(frame["data"]["status"]["exec_info"]["queue_remaining"], int)


async def test_connect_without_client_id_gets_a_generated_sid(target: Target) -> None:
    async with open_ws(target, None) as ws:
        [frame] = ws.connect_frames
        assert re.fullmatch(r"[0-9a-f]{32}", frame["data"]["sid"]), frame


async def test_feature_flags_handshake_answers_the_first_json_frame_only(target: Target) -> None:
    async with open_ws(target) as ws:
        await ws.send_text("not json")
        reply = await ws.negotiate_features()
        assert reply == {"type": "feature_flags", "data": server_features(target)}
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        assert await ws.drain(0.5) == [], "a second JSON frame gets no answer"


async def test_successful_run_frame_order(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    prefix = "contract_order_" + unique_token()
    async with open_ws(target) as ws:
        prompt_id = await queue_prompt(http, make_invert_graph(prefix), ws.client_id)
        frames = await ws.collect_run(prompt_id)
    assert frame_types(frames) == SUCCESS_ORDER
    assert [s["status"]["exec_info"]["queue_remaining"] for s in data_of(frames, "status")] == [1, 1, 0]
    assert data_of(frames, "execution_cached")[0]["nodes"] == []
    executing = data_of(frames, "executing")
    assert [(e["node"], e.get("display_node")) for e in executing[:-1]] == [("1", "1"), ("2", "2"), ("3", "3")]
    assert executing[-1] == {"node": None, "prompt_id": prompt_id}
    [executed] = data_of(frames, "executed")
    assert executed == {
        "node": "3", "display_node": "3", "prompt_id": prompt_id,
        "output": {"images": [{"filename": f"{prefix}_00001_.png", "subfolder": "", "type": "output"}]},
    }  # fmt: skip
    states = data_of(frames, "progress_state")
    assert list(states[0]["nodes"]) == ["1"] and states[0]["nodes"]["1"]["state"] == "running"
    final = states[-1]["nodes"]
    assert list(final) == ["1", "2", "3"] and {node["state"] for node in final.values()} == {"finished"}
    assert set(final["3"]) == PROGRESS_NODE_KEYS
    for name in ("execution_start", "execution_success"):
        [data] = data_of(frames, name)
        assert set(data) == {"prompt_id", "timestamp"} and data["prompt_id"] == prompt_id


async def test_identical_resubmission_is_fully_cached(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    graph = make_invert_graph("contract_cache_" + unique_token())
    async with open_ws(target) as ws:
        first = await ws.collect_run(await queue_prompt(http, graph, ws.client_id))
        files_before = files_in(target.output_dir)
        listing_before = (await http.get("/internal/files/output")).json()
        second_id = await queue_prompt(http, graph, ws.client_id)
        second = await ws.collect_run(second_id)
    assert frame_types(second) == CACHED_ORDER
    assert sorted(data_of(second, "execution_cached")[0]["nodes"]) == ["1", "2", "3"]
    assert data_of(second, "executed")[0]["output"] == data_of(first, "executed")[0]["output"]
    [state] = data_of(second, "progress_state")
    assert list(state["nodes"]) == ["3"] and state["nodes"]["3"]["state"] == "finished"
    assert files_in(target.output_dir) == files_before, "a cached run writes no file"
    assert (await http.get("/internal/files/output")).json() == listing_before
    history = await wait_history(http, second_id)
    assert history["outputs"] == {"3": data_of(first, "executed")[0]["output"]}


async def test_runtime_error_frames_and_history(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    name = f"contract_notimage_{unique_token()}.png"
    assert (await upload(http, name, b"plain text, not an image")).status_code == 200
    graph = make_load_image_graph(name, "contract_err_" + unique_token())
    async with open_ws(target) as ws:
        prompt_id = await queue_prompt(http, graph, ws.client_id)
        frames = await ws.collect_run(prompt_id)
        again = await ws.collect_run(await queue_prompt(http, graph, ws.client_id))
    assert frame_types(frames) == ERROR_ORDER
    assert frame_types(again) == ERROR_ORDER, "a failed node is not cached"
    [error] = data_of(frames, "execution_error")
    assert set(error) == {"prompt_id", "node_id", "node_type", "executed", "exception_message", "exception_type",
                          "traceback", "current_inputs", "current_outputs", "timestamp"}  # fmt: skip
    assert (error["node_id"], error["node_type"], error["executed"]) == ("1", "LoadImage", [])
    assert error["exception_type"] == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in error["exception_message"]
    assert error["current_inputs"] == {"image": [name]}
    assert isinstance(error["traceback"], list) and error["traceback"]
    history = await wait_history(http, prompt_id)
    assert history["outputs"] == {}
    assert (history["status"]["status_str"], history["status"]["completed"]) == ("error", False)
    assert [message[0] for message in history["status"]["messages"]] == [
        "execution_start", "execution_cached", "execution_error"]  # fmt: skip


async def test_without_client_id_only_progress_is_broadcast(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    async with open_ws(target) as observer:
        prompt_id = await queue_prompt(http, make_invert_graph("contract_noclient_" + unique_token()))
        await wait_history(http, prompt_id)
        frames = await observer.drain(0.5)
    types = frame_types(frames)
    assert "progress_state" in types
    assert set(types) <= {"status", "progress_state"}, types
    assert not PER_PROMPT_TYPES & set(types)
    assert all(state["prompt_id"] == prompt_id for state in data_of(frames, "progress_state"))


async def test_same_client_id_replaces_the_older_socket(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    client_id = "contract-dup-" + unique_token()
    async with open_ws(target, client_id) as older, open_ws(target, client_id) as newer:
        prompt_id = await queue_prompt(http, make_invert_graph("contract_dup_" + unique_token()), client_id)
        assert frame_types(await newer.collect_run(prompt_id)) == SUCCESS_ORDER
        assert await older.drain(0.3) == [], "the replaced socket gets nothing, not even status"
        await older.close()
        await asyncio.sleep(0.3)
        second = await queue_prompt(http, make_invert_graph("contract_dup_" + unique_token()), client_id)
        await wait_history(http, second)
        assert await newer.drain(0.5) == [], "closing the older socket unregisters the shared clientId"
