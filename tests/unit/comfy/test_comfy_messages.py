"""Parsing of ComfyUI websocket frames, fed with frames captured from a real ComfyUI 0.3.64."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from comfyui_api.comfy.messages import (
    ComfyExited,
    Executed,
    Executing,
    ExecutionCached,
    ExecutionError,
    ExecutionInterrupted,
    ExecutionStart,
    ExecutionSuccess,
    FeatureFlags,
    Preview,
    Progress,
    ProgressState,
    StatusMessage,
    StreamDisconnected,
    StreamIdle,
    UnknownMessage,
    message_prompt_id,
    parse_binary_frame,
    parse_message,
    parse_text_frame,
)
from tests.unit.comfy.captures import load_capture, needs_captures


def text_frames(session: dict[str, Any]) -> list[dict[str, Any]]:
    return [frame["json"] for frame in session["ws"] if "json" in frame]


def rebuild_binary(frame: dict[str, Any], image: bytes = b"\xff\xd8fakejpeg") -> bytes:
    """A binary frame with the captured header (type, image type or metadata) and stand-in image bytes."""
    if frame["event_type"] == 1:
        return struct.pack(">II", 1, frame["image_type"]) + image
    metadata = json.dumps(frame["metadata"]).encode()
    assert len(metadata) == frame["metadata_len"]  # the capture's metadata JSON is reproduced byte for byte
    return struct.pack(">II", 4, len(metadata)) + metadata + image


EXPECTED_TYPES = {
    "status": StatusMessage,
    "execution_start": ExecutionStart,
    "execution_cached": ExecutionCached,
    "executing": Executing,
    "progress": Progress,
    "progress_state": ProgressState,
    "executed": Executed,
    "execution_success": ExecutionSuccess,
    "execution_error": ExecutionError,
    "execution_interrupted": ExecutionInterrupted,
    "feature_flags": FeatureFlags,
}


@needs_captures
@pytest.mark.parametrize(
    "capture",
    [
        "prompt_valid_basic.json",
        "prompt_valid_media.json",
        "prompt_runtime_error.json",
        "ws_previews_latent2rgb.json",
        "prompt_ws_binary_save_image_websocket.json",
        "model_txt2img.json",
    ],
)
def test_every_captured_text_frame_parses_to_its_type(capture: str) -> None:
    seen = set()
    for session in load_capture(capture).values():
        if not isinstance(session, dict) or "ws" not in session:
            continue
        for payload in text_frames(session):
            message = parse_text_frame(json.dumps(payload))
            assert type(message) is EXPECTED_TYPES[payload["type"]]
            assert message.raw_type == payload["type"]
            assert message.raw_data == payload["data"]
            if payload["type"] in ("status", "feature_flags"):
                assert message_prompt_id(message) is None
            else:
                assert message_prompt_id(message) == payload["data"]["prompt_id"]
            seen.add(payload["type"])
    assert {"status", "execution_start", "executing"} <= seen


@needs_captures
def test_successful_run_ends_with_terminal_executing_frame() -> None:
    session = load_capture("prompt_valid_basic.json")["A_invert_first"]
    messages = [parse_text_frame(json.dumps(p)) for p in text_frames(session)]
    terminal = [m for m in messages if m.is_terminal]
    assert [type(m) for m in terminal] == [ExecutionSuccess, Executing]
    assert messages[-1] == Executing(session["prompt_id"], None, None)
    executed = next(m for m in messages if isinstance(m, Executed))
    assert executed.node == "3"
    assert executed.output["images"][0]["type"] == "output"
    start = next(m for m in messages if isinstance(m, ExecutionStart))
    assert isinstance(start.timestamp_ms, int)
    status = messages[0]
    assert isinstance(status, StatusMessage) and status.queue_remaining == 1


@needs_captures
def test_execution_error_frame_keeps_node_and_traceback() -> None:
    session = load_capture("prompt_runtime_error.json")["corrupt_png_loadimage"]
    payload = next(p for p in text_frames(session) if p["type"] == "execution_error")
    message = parse_text_frame(json.dumps(payload))
    assert isinstance(message, ExecutionError)
    assert (message.node_id, message.node_type) == ("1", "LoadImage")
    assert message.exception_type == "PIL.UnidentifiedImageError"
    assert "cannot identify image file" in message.exception_message
    assert len(message.traceback) == len(payload["data"]["traceback"]) > 0
    assert message.is_terminal


@needs_captures
def test_interrupted_frame() -> None:
    payload = load_capture("queue_interrupt_free.json")["ws_interrupt_frames"][1]["json"]
    message = parse_text_frame(json.dumps(payload))
    assert isinstance(message, ExecutionInterrupted)
    assert (message.node_id, message.node_type) == ("3", "KSampler")
    assert message.executed == ("7", "5", "6", "4")
    assert message.is_terminal


@needs_captures
def test_binary_preview_frames_from_captures() -> None:
    legacy = load_capture("ws_previews_latent2rgb.json")["legacy_client"]["ws"]
    with_metadata = load_capture("ws_previews_latent2rgb.json")["metadata_client"]["ws"]
    legacy_frame = next(f for f in legacy if f.get("binary"))
    metadata_frame = next(f for f in with_metadata if f.get("binary"))

    preview = parse_binary_frame(rebuild_binary(legacy_frame))
    assert preview == Preview(None, None, "image/jpeg", b"\xff\xd8fakejpeg")

    preview = parse_binary_frame(rebuild_binary(metadata_frame))
    assert preview is not None
    assert preview.prompt_id == metadata_frame["metadata"]["prompt_id"]
    assert preview.node_id == "3"
    assert preview.content_type == "image/jpeg"
    assert preview.data == b"\xff\xd8fakejpeg"


@needs_captures
def test_save_image_websocket_png_frames() -> None:
    sessions = load_capture("prompt_ws_binary_save_image_websocket.json")
    for name, expected_prompt in (
        ("H_save_image_websocket_legacy_client", None),
        ("H_save_image_websocket_ff_client", sessions["H_save_image_websocket_ff_client"]["prompt_id"]),
    ):
        frames = [f for f in sessions[name]["ws"] if f.get("binary")]
        assert len(frames) == 2
        for frame in frames:
            preview = parse_binary_frame(rebuild_binary(frame, b"\x89PNG..."))
            assert preview is not None
            assert preview.content_type == "image/png"
            assert preview.prompt_id == expected_prompt


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ('{"type":"executing","data":{"node":"5","prompt_id":"p","future_field":1}}', Executing("p", "5")),
        ('{"type":"progress","data":{"value":2,"max":4,"prompt_id":"p","node":"3"}}', Progress("p", "3", 2, 4)),
        ('{"type":"progress","data":{"prompt_id":"p"}}', Progress("p", None, 0, 0)),
        ('{"type":"status","data":{}}', StatusMessage(None)),
        ('{"type":"status","data":{"status":{"exec_info":{"queue_remaining":3}},"sid":"x"}}', StatusMessage(3, "x")),
        ('{"type":"execution_cached","data":{"nodes":"oops","prompt_id":"p"}}', ExecutionCached("p", ())),
        ('{"type":"executed","data":{"node":"9","prompt_id":"p"}}', Executed("p", "9", {})),
        ('{"type":"execution_success","data":{"prompt_id":"p","timestamp":"soon"}}', ExecutionSuccess("p", None)),
        ('{"type":"crystools.monitor","data":{"cpu":3}}', UnknownMessage("crystools.monitor", {"cpu": 3})),
        ('{"type":"executing","data":"not a dict"}', Executing(None, None)),
        ("not json at all", UnknownMessage("", {"text": "not json at all"})),
        ("[1, 2]", UnknownMessage("", {"value": [1, 2]})),
    ],
)
def test_parsing_is_lenient(frame: str, expected: object) -> None:
    assert parse_text_frame(frame) == expected


def test_unknown_message_exposes_prompt_id_for_routing() -> None:
    message = parse_text_frame('{"type":"custom.node_text","data":{"prompt_id":"p1","text":"hi"}}')
    assert isinstance(message, UnknownMessage)
    assert message_prompt_id(message) == "p1"
    assert message.raw_type == "custom.node_text"


def test_numeric_node_ids_become_strings() -> None:
    message = parse_message("executing", {"node": 7, "prompt_id": "p"})
    assert message == Executing("p", "7")


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x00\x00\x00\x01",  # truncated header
        struct.pack(">II", 3, 1) + b"1hello",  # progress text: not a preview
        struct.pack(">II", 4, 500) + b"{}",  # metadata length past the end
        struct.pack(">II", 9, 0),  # unknown type
    ],
)
def test_binary_frames_that_are_not_previews(frame: bytes) -> None:
    assert parse_binary_frame(frame) is None


def test_binary_type4_with_broken_metadata_is_still_a_preview() -> None:
    frame = struct.pack(">II", 4, 3) + b"{x}" + b"img"
    preview = parse_binary_frame(frame)
    assert preview == Preview(None, None, "application/octet-stream", b"img")


def test_stream_level_messages() -> None:
    idle = StreamIdle(idle_s=15.0)
    assert isinstance(idle, StreamDisconnected) and idle.reason == "idle"
    assert idle.raw_type == "stream_idle"
    assert ComfyExited(1).is_terminal
    assert not StreamDisconnected("gone").is_terminal
    assert message_prompt_id(ComfyExited(1)) is None
