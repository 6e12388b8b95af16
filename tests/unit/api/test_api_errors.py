"""The HTTP edge without ComfyUI: every error becomes `{"error": {type, message, field?, details?}}` with the right
status and headers; request validation names the field; thin handlers hand a JobRequest to the runner."""

from __future__ import annotations

import json

import pytest

from comfyui_api.errors import (
    CapacityError,
    ComfyApiError,
    ComfyUnavailable,
    ExecutionFailed,
    InputStagingError,
    JobCancelled,
    JobTimeout,
    WorkflowRejected,
)
from comfyui_api.version import package_version
from tests.unit.api.app_support import GRAPH, post_json


async def test_success_hands_a_job_request_to_the_runner(client, runner) -> None:
    response = await post_json(client, {"prompt": GRAPH, "id": "abc", "timeout_s": 30})
    assert response.status_code == 200
    assert response.json() == {
        "id": "abc",
        "prompt": GRAPH,
        "images": [],
        "filenames": [],
        "outputs": [],
        "texts": ["done"],
        "stats": response.json()["stats"],
    }
    assert (runner.requests[0].id, runner.requests[0].timeout_s) == ("abc", 30)


async def test_defaults_id_and_timeout(client, runner) -> None:
    await post_json(client, {"prompt": GRAPH})
    assert len(runner.requests[0].id) == 36
    assert runner.requests[0].timeout_s == 60


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (b"{not json", None, "malformed JSON"),
        (b"", None, "JSON object"),
        (b"[1, 2]", None, "object"),
        ({"prompt": GRAPH, "webhook_urll": "x"}, "webhook_urll", "unknown field"),
        ({"id": "x"}, "prompt", "missing required field"),
        ({"prompt": [1]}, "prompt", "object"),
        ({"prompt": {}}, "prompt", "at least one node"),
        ({"prompt": {"1": 5}}, "prompt.1", "object"),
        ({"prompt": {"1": {"class_type": 5, "inputs": {}}}}, "prompt.1.class_type", "string"),
        ({"prompt": {"1": {"class_type": "X", "inputs": []}}}, "prompt.1.inputs", "object"),
        ({"prompt": GRAPH, "id": "../../etc"}, "id", "regex"),
        ({"prompt": GRAPH, "timeout_s": 0.5}, "timeout_s", ">= 1"),
        ({"prompt": GRAPH, "timeout_s": 121}, "timeout_s", "at most 120"),
    ],
)
async def test_bad_requests_name_the_field(client, runner, body, field, fragment) -> None:
    response = await post_json(client, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert error.get("field") == field
    assert fragment in error["message"]
    assert runner.requests == []


async def test_body_over_the_limit_is_413(client) -> None:
    response = await post_json(client, {"prompt": {"1": {"class_type": "x" * 4096, "inputs": {}}}})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"


@pytest.mark.parametrize(
    ("error", "status", "kind", "retry_after"),
    [
        (InputStagingError("bad base64", field="prompt.1.inputs.image"), 400, "input_staging_failed", None),
        (CapacityError("full", retry_after_s=7), 503, "queue_full", "7"),
        (ComfyUnavailable("gone", retry_after_s=11), 503, "comfyui_unavailable", "11"),
        (
            ExecutionFailed("boom", node_id="3", node_type="KSampler", exception_type="RuntimeError"),
            500,
            "execution_failed",
            None,
        ),
        (JobTimeout("slow"), 504, "timeout", None),
        (JobCancelled("stopped"), 409, "cancelled", None),
        (RuntimeError("surprise"), 500, "internal_error", None),
    ],
)
async def test_domain_errors_map_to_status_and_shape(client, runner, error, status, kind, retry_after) -> None:
    runner.error = error
    response = await post_json(client, {"prompt": GRAPH})
    assert response.status_code == status
    body = response.json()
    assert body["error"]["type"] == kind
    assert response.headers.get("retry-after") == retry_after
    if isinstance(error, ComfyApiError):
        assert body["error"] == error.to_dict()


async def test_rejected_workflow_carries_comfyui_node_errors(client, runner) -> None:
    node_errors = {"9": {"errors": [{"type": "required_input_missing"}], "class_type": "SaveImage"}}
    runner.error = WorkflowRejected(
        "invalid", comfy_error={"type": "prompt_outputs_failed_validation"}, node_errors=node_errors
    )
    response = await post_json(client, {"prompt": GRAPH})
    assert response.status_code == 400
    assert response.json()["node_errors"] == node_errors
    assert response.json()["error"]["details"]["error"]["type"] == "prompt_outputs_failed_validation"


async def test_interrupt(client) -> None:
    assert (await post_json(client, {"id": "known"}, "/interrupt")).json() == {"id": "known", "status": "removed"}
    missing = await post_json(client, {"id": "other"}, "/interrupt")
    assert missing.status_code == 404
    assert missing.json()["error"] == {"type": "job_not_found", "message": "no job with id 'other'", "field": "id"}


async def test_unknown_route_and_method_use_the_same_shape(client) -> None:
    assert (await client.get("/nope")).json()["error"]["type"] == "not_found"
    assert (await client.get("/prompt")).json()["error"]["type"] == "method_not_allowed"


async def test_health_ready_and_docs(client) -> None:
    assert (await client.get("/health")).json() == {
        "status": "healthy",
        "comfyui": "ready",
        "comfyui_phase": "ready",
        "comfyui_version": "0.33.0",
        "version": package_version(),
    }
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready", "phase": "ready", "queue_depth": 0, "max_queue_depth": 3, "version": package_version(),
    }  # fmt: skip
    spec = (await client.get("/docs/openapi.json")).json()
    assert {"/prompt", "/interrupt", "/health", "/ready", "/models"} <= set(spec["paths"])
    assert "PromptRequest" in json.dumps(spec["components"])
    assert "swagger" in (await client.get("/docs")).text.lower()


async def test_json_nested_too_deeply_is_a_400_naming_the_body(client, runner) -> None:
    deep = "[" * 960 + "]" * 960  # under 2 KB
    body = '{"prompt": {"1": {"class_type": "X", "inputs": {"a": ' + deep + "}}}}"
    response = await post_json(client, body.encode())
    assert response.status_code == 400, response.text
    # Whether the decoder's recursion gives out first depends on the stack it runs on; either way, a 400 naming it.
    assert response.json()["error"]["field"] in ("body", "prompt.1.inputs.a")
    assert runner.requests == []
