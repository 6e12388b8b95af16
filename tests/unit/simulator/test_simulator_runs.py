"""Prompt execution seen from /ws and /history: frame order, the cache, errors, interrupt, previews, routing."""

from __future__ import annotations

import asyncio
import json
import struct
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image

from tests.unit.simulator.simulator_support import (
    WAIT_S,
    RunningSimulator,
    capture_kinds,
    invert_graph,
    kinds,
    load_capture,
    png_bytes,
    running_simulator,
    txt2img_graph,
)

BASIC = load_capture("prompt_valid_basic.json")


async def run(server: RunningSimulator, prompt: dict[str, Any], client_id: str, **fields: Any) -> list[Any]:
    async with server.websocket(client_id) as ws:
        answer = await server.post_prompt(prompt, client_id, **fields)
        return await ws.until_done(answer["prompt_id"])


async def history(server: RunningSimulator, prompt_id: str) -> dict[str, Any]:
    return dict(json.loads((await server.request("GET", f"/history/{prompt_id}"))[2])[prompt_id])


async def test_invert_runs_match_the_recorded_frame_sequences(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server:
        for label in ("A_invert_first", "A_invert_resubmit_identical", "A_invert_change_prefix"):
            prompt = BASIC[label]["post"]["request"]["json"]["prompt"]
            frames = await run(server, prompt, client)
            assert kinds(frames) == capture_kinds(BASIC[label]["ws"]), label
            expected = [f["json"] for f in BASIC[label]["ws"] if f["json"]["type"] in ("executed", "progress_state")]
            got = [f for f in frames if f["type"] in ("executed", "progress_state")]
            for mine, recorded in zip(got, expected, strict=True):
                if mine["type"] == "executed":
                    assert mine["data"]["output"] == recorded["data"]["output"], label
                else:  # float 0.0/1.0 at node start, the ints 1/1 of a cached output node
                    assert [(n, s["value"], s["max"], s["state"]) for n, s in mine["data"]["nodes"].items()] == [
                        (n, s["value"], s["max"], s["state"]) for n, s in recorded["data"]["nodes"].items()
                    ], label
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == [
        "cap_invert2_00001_.png",
        "cap_invert_00001_.png",
    ]


async def test_cached_resubmit_writes_nothing_and_reports_old_names(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server:
        first = await run(server, invert_graph("same"), client)
        written = {p: p.stat().st_mtime_ns for p in (tmp_path / "output").iterdir()}
        second = await run(server, invert_graph("same"), client)
        assert {p: p.stat().st_mtime_ns for p in (tmp_path / "output").iterdir()} == written
        outputs = [f["data"]["output"] for f in first + second if f["type"] == "executed"]
        assert outputs[0] == outputs[1] == {"images": [{"filename": "same_00001_.png", "subfolder": "",
                                                        "type": "output"}]}  # fmt: skip
        cached = next(f for f in second if f["type"] == "execution_cached")
        assert cached["data"]["nodes"] == ["1", "2", "3"]
        recolored = await run(server, invert_graph("same", color=1), client)
        assert [k for k in kinds(recolored) if k.startswith("executing:")] == [
            "executing:1", "executing:2", "executing:3", "executing:None"]  # fmt: skip


async def test_png_outputs_carry_prompt_and_workflow(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        workflow = {"nodes": [], "note": "w"}
        frames = await run(
            server, invert_graph("meta"), uuid.uuid4().hex, extra_data={"extra_pnginfo": {"workflow": workflow}}
        )
        prompt_id = frames[-1]["data"]["prompt_id"]
        entry = await history(server, prompt_id)
    assert entry["prompt"][3]["extra_pnginfo"] == {"workflow": workflow}
    with Image.open(tmp_path / "output" / "meta_00001_.png") as img:
        assert json.loads(img.text["prompt"]) == invert_graph("meta")
        assert json.loads(img.text["workflow"]) == workflow
        assert img.getpixel((0, 0)) == (204, 153, 50)  # 1 - 0xCC/255 in float32 truncates to 50, as in ComfyUI


async def test_metadata_can_be_disabled(tmp_path: Path) -> None:
    async with running_simulator(tmp_path, "--disable-metadata") as server:
        await run(server, invert_graph("plain"), uuid.uuid4().hex)
    with Image.open(tmp_path / "output" / "plain_00001_.png") as img:
        assert "prompt" not in img.info


async def test_runtime_error_is_reported_and_not_cached(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "broken.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "never"}}}  # fmt: skip
    async with running_simulator(tmp_path) as server:
        await server.upload("broken.png", b"these bytes are not an image")
        for _ in range(2):
            frames = await run(server, prompt, client)
            assert kinds(frames) == ["status", "status", "execution_start", "execution_cached", "progress_state",
                                     "executing:1", "execution_error", "status", "executing:None"]  # fmt: skip
            error = frames[6]["data"]
            assert (error["node_id"], error["node_type"], error["exception_type"]) == (
                "1", "LoadImage", "PIL.UnidentifiedImageError")  # fmt: skip
            assert error["exception_message"] == f"cannot identify image file '{tmp_path / 'input' / 'broken.png'}'\n"
            assert error["current_inputs"] == {"image": ["broken.png"]} and error["executed"] == []
            assert sorted(error["current_outputs"]) == ["1", "2"] and error["traceback"]
            entry = await history(server, error["prompt_id"])
            assert (entry["status"]["status_str"], entry["status"]["completed"], entry["outputs"]) == (
                "error",
                False,
                {},
            )


async def test_string_instead_of_link_fails_at_run_time(tmp_path: Path) -> None:
    prompt = invert_graph("bad")
    prompt["2"]["inputs"]["image"] = "1"
    async with running_simulator(tmp_path) as server:
        frames = await run(server, prompt, uuid.uuid4().hex)
    error = next(f["data"] for f in frames if f["type"] == "execution_error")
    assert (error["node_id"], error["exception_type"]) == ("2", "TypeError")
    assert error["exception_message"] == "unsupported operand type(s) for -: 'float' and 'str'\n"


async def test_ksampler_reports_steps_and_is_deterministic(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server:
        frames = await run(server, txt2img_graph("sim-sd15.safetensors", "a", 7, 3), client)
        progress = [
            (f["data"]["value"], f["data"]["max"], f["data"]["node"]) for f in frames if f["type"] == "progress"
        ]
        assert progress == [(1, 3, "3"), (2, 3, "3"), (3, 3, "3")]
        assert [k for k in kinds(frames) if k.startswith("executing:")] == [
            "executing:4", "executing:5", "executing:7", "executing:6", "executing:3", "executing:8", "executing:9",
            "executing:None"]  # fmt: skip
        status, _, _ = await server.request("POST", "/free", json={"free_memory": True})
        assert status == 200
        await run(server, invert_graph("flush"), client)  # the flag is applied after a prompt
        again = await run(server, txt2img_graph("sim-sd15.safetensors", "b", 7, 3), client)
        assert next(f for f in again if f["type"] == "execution_cached")["data"]["nodes"] == []
        other = await run(server, txt2img_graph("sim-sd15.safetensors", "c", 8, 3), client)
        assert "executing:3" in kinds(other)
    pixels = [Image.open(tmp_path / "output" / f"{p}_00001_.png").tobytes() for p in ("a", "b", "c")]
    assert pixels[0] == pixels[1] != pixels[2]


async def test_interrupt_stops_a_running_sampler_and_the_next_prompt_runs(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server, server.websocket(client) as ws:
        slow = await server.post_prompt(txt2img_graph("sim-sd15.safetensors", "slow", 1, 10_000), client)
        following = await server.post_prompt(invert_graph("after"), client)
        while (await ws.next_frame()).get("type") != "progress":
            pass
        ignored = await server.request("POST", "/interrupt", json={"prompt_id": following["prompt_id"]})
        assert ignored[0] == 200
        await server.request("POST", "/interrupt", json={"prompt_id": slow["prompt_id"]})
        frames = await ws.until_done(slow["prompt_id"])
        interrupted = next(f["data"] for f in frames if f["type"] == "execution_interrupted")
        assert (interrupted["node_id"], interrupted["node_type"]) == ("3", "KSampler")
        assert sorted(interrupted["executed"]) == ["4", "5", "6", "7"]
        assert kinds(frames)[-3:] == ["execution_interrupted", "status", "executing:None"]
        await ws.until_done(following["prompt_id"])
        entry = await history(server, slow["prompt_id"])
        assert (entry["status"]["status_str"], entry["outputs"]) == ("error", {})
        assert (await history(server, following["prompt_id"]))["status"]["status_str"] == "success"


async def test_queue_listing_front_and_delete(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server, server.websocket(client) as ws:
        slow = await server.post_prompt(txt2img_graph("sim-sd15.safetensors", "slow", 2, 10_000), client)
        while (await ws.next_frame()).get("type") != "progress":
            pass
        back = [await server.post_prompt(invert_graph(f"q{i}", color=i)) for i in range(3)]
        front = await server.post_prompt(invert_graph("front", color=9), front=True)
        chosen = await server.post_prompt(invert_graph("chosen", color=10), prompt_id="my-id", number=7.5)
        assert (front["number"] < 0, chosen["prompt_id"], chosen["number"]) == (True, "my-id", 7.5)
        queue = json.loads((await server.request("GET", "/queue"))[2])
        assert [item[1] for item in queue["queue_running"]] == [slow["prompt_id"]]
        order = [item[1] for item in sorted(queue["queue_pending"], key=lambda item: item[0])]
        assert order == [front["prompt_id"], *(b["prompt_id"] for b in back), "my-id"]
        await server.request("POST", "/queue", json={"delete": [back[0]["prompt_id"]]})
        statuses = []
        while len(statuses) < 6:  # five puts announced, then the delete; steps keep arriving meanwhile
            frame = await ws.next_frame()
            if frame.get("type") == "status":
                statuses.append(frame["data"]["status"]["exec_info"]["queue_remaining"])
        assert statuses == [2, 3, 4, 5, 6, 5]
        await server.request("POST", "/queue", json={"clear": True})
        assert json.loads((await server.request("GET", "/prompt"))[2]) == {"exec_info": {"queue_remaining": 1}}
        await server.request("POST", "/interrupt")
        await ws.until_done(slow["prompt_id"])


async def test_save_image_websocket_frames_depend_on_the_handshake(tmp_path: Path) -> None:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 8, "batch_size": 2, "color": 0}},
              "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}  # fmt: skip
    async with running_simulator(tmp_path) as server:
        legacy = await run(server, prompt, uuid.uuid4().hex)
        assert [k for k in kinds(legacy) if k in ("progress", "binary:1", "binary:4")] == [
            "progress", "binary:1", "progress", "binary:1"]  # fmt: skip
        frame = next(f for f in legacy if isinstance(f, bytes))
        assert struct.unpack(">II", frame[:8]) == (1, 2) and Image.open(BytesIO(frame[8:])).size == (16, 8)
        client = uuid.uuid4().hex
        async with server.websocket(client) as ws:
            await ws.ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            reply = await ws.next_frame()
            assert reply == {"type": "feature_flags", "data": {"supports_preview_metadata": True,
                                                               "max_upload_size": 104857600}}  # fmt: skip
            answer = await server.post_prompt(prompt, client)
            flagged = await ws.until_done(answer["prompt_id"])
        assert [k for k in kinds(flagged) if k in ("progress", "binary:1", "binary:4")] == [
            "binary:4", "progress", "binary:4", "progress"]  # fmt: skip
        frame = next(f for f in flagged if isinstance(f, bytes))
        (length,) = struct.unpack(">I", frame[4:8])
        metadata = json.loads(frame[8 : 8 + length])
        assert metadata == {"node_id": "2", "prompt_id": answer["prompt_id"], "display_node_id": "2",
                            "parent_node_id": None, "real_node_id": "2", "image_type": "image/png"}  # fmt: skip
        entry = await history(server, answer["prompt_id"])
        assert (entry["outputs"], entry["meta"]) == ({}, {})


async def test_latent_previews_are_scaled_jpegs(tmp_path: Path) -> None:
    async with running_simulator(tmp_path, "--preview-method", "latent2rgb", "--preview-size", "128") as server:
        frames = await run(server, txt2img_graph("sim-sd15.safetensors", "p", 3, 2), uuid.uuid4().hex)
    binary = [f for f in frames if isinstance(f, bytes)]
    assert len(binary) == 2 and all(struct.unpack(">II", f[:8]) == (1, 1) for f in binary)
    assert Image.open(BytesIO(binary[0][8:])).size == (128, 128)
    steps = kinds(frames)
    assert steps.index("binary:1") == steps.index("progress") + 1


async def test_prompt_without_client_id_broadcasts_progress_only(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server, server.websocket(uuid.uuid4().hex) as observer:
        answer = await server.post_prompt(invert_graph("anon"))
        frames = []
        while True:
            frame = await observer.next_frame()
            frames.append(frame)
            if frame["type"] == "status" and frame["data"]["status"]["exec_info"]["queue_remaining"] == 0:
                break
        assert set(kinds(frames)) == {"status", "progress_state"}
        assert (await history(server, answer["prompt_id"]))["prompt"][3] == {}


async def test_reconnecting_client_gets_the_running_node(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server:
        async with server.websocket(client) as ws:
            answer = await server.post_prompt(txt2img_graph("sim-sd15.safetensors", "r", 4, 10_000), client)
            while (await ws.next_frame()).get("type") != "progress":
                pass
        async with server.websocket(client) as again:
            assert again.hello["data"]["sid"] == client
            assert await again.next_frame() == {"type": "executing", "data": {"node": "3"}}
            await server.request("POST", "/interrupt")
            await again.until_done(answer["prompt_id"])


async def test_same_client_id_twice_silences_both_once_the_old_socket_closes(tmp_path: Path) -> None:
    client = uuid.uuid4().hex
    async with running_simulator(tmp_path) as server, server.websocket(client) as newer:
        async with server.websocket(client) as older:
            assert older.hello["data"]["sid"] == client
        await asyncio.sleep(0.05)
        assert client not in server.sim.hub.sockets
        await server.post_prompt(invert_graph("quiet"), client)
        assert await newer.quiet(0.3) == []


async def test_connect_without_client_id_and_late_flags(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server, server.websocket() as ws:
        assert len(ws.hello["data"]["sid"]) == 32 and ws.hello["type"] == "status"
        await ws.ws.send_str("not json")
        await ws.ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        assert (await ws.next_frame(WAIT_S))["type"] == "feature_flags"
        await ws.ws.send_str(json.dumps({"type": "feature_flags", "data": {}}))
        assert await ws.quiet(0.2) == []


async def test_preview_image_uses_temp_names(tmp_path: Path) -> None:
    prompt = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 255}},
              "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}  # fmt: skip
    async with running_simulator(tmp_path) as server:
        await server.upload("x.png", png_bytes())
        frames = await run(server, prompt, uuid.uuid4().hex)
    images = next(f for f in frames if f["type"] == "executed")["data"]["output"]["images"]
    stem = images[0]["filename"][: -len("_00001_.png")]
    assert stem.startswith("ComfyUI_temp_") and len(stem) == len("ComfyUI_temp_") + 5
    assert [i["filename"] for i in images] == [f"{stem}_00001_.png", f"{stem}_00002_.png"]
    assert all(i["type"] == "temp" and i["subfolder"] == "" for i in images)
    assert (tmp_path / "tmp" / "temp" / images[0]["filename"]).exists()
