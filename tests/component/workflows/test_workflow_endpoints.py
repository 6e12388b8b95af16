"""POST /workflow/<route> in a real Litestar app with the shipped example workflows and a recording `submit`:
validation (400 naming input.<name>), documentation (OpenAPI), and the graph and options handed to `submit`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar, Request
from litestar.testing import TestClient

from comfyui_api.api.errors import EXCEPTION_HANDLERS
from comfyui_api.api.schemas import ERROR_RESPONSES
from comfyui_api.api.workflow_handlers import build_workflow_controllers
from comfyui_api.dialects.salad import PromptRequest, PromptResponse
from comfyui_api.workflows.catalog import WorkflowCatalog
from tests.unit.workflows.factories import (
    CAPTURED_CHECKPOINT,
    PNG_BASE64,
    SHIPPED_WORKFLOWS,
    object_info,
    txt2img_graph,
    write_workflow,
)

TXT2IMG = "/workflow/sdxl/txt2img"
IMG2IMG = "/workflow/sdxl/img2img"


@dataclass
class RecordingSubmit:
    """Stands in for the app's POST /prompt path: records what it is given and answers like a job result."""

    calls: list[tuple[dict[str, Any], Any, str]] = field(default_factory=list)

    async def __call__(self, graph: dict[str, Any], options: Any, request: Request[Any, Any, Any]) -> Any:
        self.calls.append((graph, options, request.url.path))
        return {"id": getattr(options, "id", "generated"), "prompt": graph}


@pytest.fixture
def submit() -> RecordingSubmit:
    return RecordingSubmit()


@pytest.fixture
def client(submit: RecordingSubmit) -> Iterator[TestClient[Litestar]]:
    catalog = WorkflowCatalog.load(SHIPPED_WORKFLOWS, object_info(), default_checkpoint=CAPTURED_CHECKPOINT)
    handlers = build_workflow_controllers(
        catalog, submit, options_type=PromptRequest, response_type=PromptResponse, responses=ERROR_RESPONSES
    )
    app = Litestar(route_handlers=handlers, exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as test_client:
        yield test_client


def test_a_valid_request_submits_the_graph_with_the_values_applied(
    client: TestClient[Litestar], submit: RecordingSubmit
) -> None:
    body = {
        "input": {"prompt": "a red fox", "negative_prompt": "text", "seed": 123, "steps": 30, "width": 768},
        "id": "job-1",
        "timeout_s": 90,
    }

    response = client.post(TXT2IMG, json=body)

    assert response.status_code == 200, response.text
    assert response.json()["id"] == "job-1"
    [(graph, options, path)] = submit.calls
    assert path == TXT2IMG
    assert options == PromptRequest(prompt=graph, id="job-1", timeout_s=90)
    assert graph["6"]["inputs"]["text"] == "a red fox"
    assert graph["7"]["inputs"]["text"] == "text"
    assert (graph["3"]["inputs"]["seed"], graph["3"]["inputs"]["steps"]) == (123, 30)
    assert (graph["5"]["inputs"]["width"], graph["5"]["inputs"]["height"]) == (768, 1024)
    assert graph["4"]["inputs"]["ckpt_name"] == CAPTURED_CHECKPOINT  # the warmup's checkpoint as default
    assert graph["3"]["inputs"]["positive"] == ["6", 0]


def test_img2img_takes_the_image_as_base64(client: TestClient[Litestar], submit: RecordingSubmit) -> None:
    body = {"input": {"prompt": "oil painting", "negative_prompt": "blur", "input_image": PNG_BASE64}}

    response = client.post(IMG2IMG, json=body)

    assert response.status_code == 200, response.text
    [(graph, options, _)] = submit.calls
    assert (options.prompt, options.timeout_s) == (graph, None)
    assert graph["10"]["inputs"]["image"] == PNG_BASE64
    assert graph["6"]["inputs"]["text"] == "oil painting"


@pytest.mark.parametrize(
    ("input_values", "field", "message"),
    [
        ({"negative_prompt": "x"}, "input.prompt", "input.prompt is required"),
        ({"prompt": "p", "steps": 101}, "input.steps", "input.steps must be at most 100, got 101"),
        ({"prompt": "p", "sampler_name": "magic"}, "input.sampler_name", "input.sampler_name must be one of"),
        ({"prompt": "p", "colour": "red"}, "input.colour", "input.colour is not an input of workflow sdxl/txt2img"),
        ({"prompt": "p", "width": "wide"}, "input.width", "input.width must be an integer, got a string"),
    ],
)
def test_invalid_input_is_a_400_naming_the_field_and_nothing_runs(
    client: TestClient[Litestar], submit: RecordingSubmit, input_values: dict, field: str, message: str
) -> None:
    response = client.post(TXT2IMG, json={"input": input_values})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", field)
    assert message in error["message"]
    assert submit.calls == []


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"timeout_s": "soon"}, "timeout_s", "timeout_s: Expected `float | null`, got `str`"),
        ({"timeout_s": -1}, "timeout_s", "timeout_s: Expected `float` >= 1.0"),
        ({"id": "../etc"}, "id", "id: Expected `str` matching regex"),
        ({"webhok": "https://example.com"}, "webhok", "webhok: Object contains unknown field `webhok`"),
    ],
)
def test_prompt_options_are_decoded_like_post_prompt_and_a_bad_one_is_a_400_naming_it(
    client: TestClient[Litestar], submit: RecordingSubmit, options: dict, field: str, message: str
) -> None:
    response = client.post(TXT2IMG, json={"input": {"prompt": "p"}, **options})

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["field"] == field
    assert error["message"].startswith(message)
    assert submit.calls == []


def test_a_prompt_in_the_body_is_refused(client: TestClient[Litestar], submit: RecordingSubmit) -> None:
    response = client.post(TXT2IMG, json={"input": {"prompt": "p"}, "prompt": {"1": {}}})

    assert response.status_code == 400
    assert response.json()["error"]["field"] == "prompt"
    assert submit.calls == []


def test_a_body_that_is_not_an_object_is_a_400(client: TestClient[Litestar], submit: RecordingSubmit) -> None:
    response = client.post(TXT2IMG, json=["prompt"])

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert submit.calls == []


def test_a_marked_workflow_requires_its_marked_required_input(client: TestClient[Litestar]) -> None:
    response = client.post("/workflow/sd15/txt2img", json={"input": {"prompt": "p"}})
    assert response.status_code == 200, response.text

    response = client.post("/workflow/sd15/txt2img", json={})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "input.prompt"  # `$prompt!` marks it required


def test_every_workflow_is_documented_with_its_schema_description_and_example(client: TestClient[Litestar]) -> None:
    spec = client.get("/schema/openapi.json").json()

    assert {"/workflow/sdxl/txt2img", "/workflow/sdxl/img2img", "/workflow/sd15/txt2img"} <= set(spec["paths"])
    operation = spec["paths"][TXT2IMG]["post"]
    assert operation["summary"] == "Text to image with Stable Diffusion XL"
    assert operation["description"].startswith("Generates images from a text prompt.")
    assert operation["tags"] == ["workflows"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["input"]
    assert body["examples"] == [{"input": {"prompt": "a red fox in fresh snow, golden hour, 35mm photo"}}]
    assert "prompt" not in body["properties"]  # the graph comes from the workflow, not the body
    assert {"id", "timeout_s"} <= set(body["properties"])  # every POST /prompt option
    inputs = body["properties"]["input"]
    assert inputs["required"] == ["prompt"]
    assert inputs["additionalProperties"] is False
    steps = inputs["properties"]["steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"], steps["default"]) == ("integer", 1, 100, 25)
    sampler = inputs["properties"]["sampler_name"]
    assert sampler["type"] == "string" and "dpmpp_2m" in sampler["enum"] and sampler["default"] == "euler"
    assert inputs["properties"]["prompt"]["description"] == "What the image should show. Sets 6.inputs.text."
    assert "A random value when omitted." in inputs["properties"]["seed"]["description"]
    responses = operation["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PromptResponse"}
    assert responses["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_media_inputs_are_documented_as_url_or_base64(client: TestClient[Litestar]) -> None:
    spec = client.get("/schema/openapi.json").json()

    body = spec["paths"][IMG2IMG]["post"]["requestBody"]["content"]["application/json"]["schema"]
    image = body["properties"]["input"]["properties"]["input_image"]
    assert image["type"] == "string"
    assert "URL" in image["description"] and "base64" in image["description"]
    assert body["examples"][0]["input"]["input_image"] == "https://example.com/photo.png"
    assert spec["paths"][IMG2IMG]["post"]["operationId"] != spec["paths"][TXT2IMG]["post"]["operationId"]


def test_without_an_options_type_submit_gets_the_options_as_a_dict(tmp_path: Path) -> None:
    write_workflow(tmp_path, "a-b", txt2img_graph(titles={"6": "$prompt!"}))
    write_workflow(tmp_path, "a_b", txt2img_graph())
    submit = RecordingSubmit()
    app = Litestar(
        route_handlers=build_workflow_controllers(WorkflowCatalog.load(tmp_path, object_info()), submit),
        exception_handlers=EXCEPTION_HANDLERS,
    )

    with TestClient(app) as test_client:
        response = test_client.post("/workflow/a-b", json={"input": {"prompt": "p"}, "anything": [1]})
        spec = test_client.get("/schema/openapi.json").json()

    assert response.status_code == 200, response.text
    [(graph, options, _)] = submit.calls
    assert options == {"anything": [1]}
    assert graph["6"]["inputs"]["text"] == "p"
    operation_ids = {spec["paths"][path]["post"]["operationId"] for path in ("/workflow/a-b", "/workflow/a_b")}
    assert len(operation_ids) == 2
