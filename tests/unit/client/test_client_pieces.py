"""The client's offline pieces: SSE parsing, graph edits for --set/--input, error bodies, results, and webhook
verification against the server's own signer."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from comfyui_api.client import ApiError, Result, WebhookVerificationError, apply_inputs, apply_sets, verify_webhook
from comfyui_api.client.sse import EventParser
from comfyui_api.client.workflow import load_workflow, parse_value
from comfyui_api.delivery.signing import WebhookSigner

SECRET = "whsec_" + base64.b64encode(b"a key of 32 bytes for the tests!").decode()


def test_sse_frames_become_events_with_ids_and_heartbeats_are_skipped() -> None:
    parser = EventParser()
    lines = [
        ": heartbeat",
        "",
        "id: 3",
        "event: progress",
        'data: {"percent": 40}',
        "",
        "event: complete",
        "data: x",
        "",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    assert [(e.name, e.data, e.id) for e in events] == [("progress", {"percent": 40}, "3"), ("complete", "x", None)]
    assert parser.last_id == "3" and events[1].terminal and not events[0].terminal


def test_sets_and_inputs_edit_the_graph(tmp_path: Path) -> None:
    graph = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}, "1": {"class_type": "LoadImage", "inputs": {}}}
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG fake")
    apply_sets(
        graph, {"3.inputs.seed": parse_value("42"), "3.cfg": parse_value("7.5"), "3.inputs.name": parse_value("a")}
    )
    apply_inputs(graph, {"1.image": str(image)})
    assert graph["3"]["inputs"] == {"seed": 42, "cfg": 7.5, "name": "a"}
    assert base64.b64decode(graph["1"]["inputs"]["image"]) == b"\x89PNG fake"
    apply_inputs(graph, {"1.image": "https://example.com/cat.png"})
    assert graph["1"]["inputs"]["image"] == "https://example.com/cat.png"
    with pytest.raises(ValueError, match="no node '7'"):
        apply_sets(graph, {"7.inputs.seed": 1})
    with pytest.raises(ValueError, match="neither a file nor"):
        apply_inputs(graph, {"1.image": str(tmp_path / "missing.png")})
    with pytest.raises(ValueError, match=r"NODE\.inputs\.NAME"):
        apply_sets(graph, {"3": 1})


def test_a_workflow_file_may_be_a_graph_or_a_request_body(tmp_path: Path) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {}}}
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    (tmp_path / "body.json").write_text(json.dumps({"prompt": graph, "id": "x"}))
    (tmp_path / "bad.json").write_text("[1, 2]")
    assert load_workflow(tmp_path / "graph.json") == load_workflow(tmp_path / "body.json") == graph
    with pytest.raises(ValueError, match="JSON object"):
        load_workflow(tmp_path / "bad.json")


def test_error_bodies_and_results() -> None:
    error = ApiError.from_body(400, {"error": {"type": "invalid_request", "message": "bad", "field": "prompt.1"}})
    assert (error.status, error.type, error.field, str(error)) == (
        400,
        "invalid_request",
        "prompt.1",
        "invalid_request (prompt.1): bad",
    )
    assert ApiError.from_body(502, "<html>").type == "http_502"
    png = base64.b64encode(b"png-bytes").decode()
    body = {
        "id": "j",
        "images": [png, "https://bucket.example/j/b.png"],
        "filenames": ["a.png", "b.png"],
        "outputs": [
            {"node_id": "9", "kind": "image", "filename": "a.png", "content_type": "image/png", "size_bytes": 9}
        ],
    }
    result = Result.from_body(body)
    assert result.outputs[0].data == b"png-bytes" and result.outputs[0].url is None
    assert result.outputs[1].data is None and result.outputs[1].url == "https://bucket.example/j/b.png"
    assert result.outputs[1].filename == "b.png"


def test_verify_webhook_accepts_the_servers_signature_and_refuses_tampering() -> None:
    body = json.dumps({"event": "prompt.complete", "id": "j"}).encode()
    headers = WebhookSigner(SECRET).headers("msg_1", body, timestamp_s=1_700_000_000)
    assert verify_webhook(headers, body, SECRET, now_s=1_700_000_010) == {"event": "prompt.complete", "id": "j"}
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_webhook(headers, body + b" ", SECRET, now_s=1_700_000_010)
    with pytest.raises(WebhookVerificationError, match="too far"):
        verify_webhook(headers, body, SECRET, now_s=1_700_000_000 + 3600)
    with pytest.raises(WebhookVerificationError, match="missing"):
        verify_webhook({}, body, SECRET)
