"""The real server serving typed workflow endpoints (WORKFLOW_DIR = the shipped examples in manifests/workflows/)
with the simulator as ComfyUI: the routes appear in /docs with choices and defaults from the simulator's
/object_info, bad input is a 400 naming `input.<name>`, and the workflows run like POST /prompt. The warmup graph
loads the simulator's checkpoint, which becomes the workflows' default checkpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.component.models.model_server import ModelServer, serve_models
from tests.integration.server import (
    CHECKPOINT,
    TARGET,
    ServerProcess,
    decode_image,
    make_server,
    png_bytes,
    running_server,
    sampler_graph,
    wait_until,
)

pytestmark = pytest.mark.slow

SHIPPED = Path(__file__).resolve().parents[2] / "manifests" / "workflows"
ROUTES = ("/workflow/sd15/txt2img", "/workflow/sdxl/img2img", "/workflow/sdxl/txt2img")
# The shipped workflows run at 512x512 or more: seconds on the simulator, ~30 s a step on a CPU ComfyUI.
REQUEST_TIMEOUT_S = TARGET.pick(simulator=30.0, real=300.0)


def workflow_env(tmp_path: Path) -> dict[str, str]:
    workflow_dir = tmp_path / "workflows"
    shutil.copytree(SHIPPED, workflow_dir)
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps(sampler_graph(1)))  # loads CHECKPOINT, the simulator's model
    return {"WORKFLOW_DIR": str(workflow_dir), "WARMUP_PROMPT_FILE": str(warmup)}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("workflows")
    yield from running_server(root, env=workflow_env(root))


async def post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        return await client.post(server.url(path), json=body)


async def get_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
        assert response.status_code == 200, response.text
        return response.json()


async def comfy_get(server: ServerProcess, path: str) -> Any:
    return await get_json(f"http://127.0.0.1:{server.comfy_port}{path}")


def input_schema(spec: dict[str, Any], route: str) -> dict[str, Any]:
    body = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return body["properties"]["input"]


async def test_the_workflows_are_documented_with_choices_from_comfyui(server: ServerProcess) -> None:
    spec = await get_json(server.url("/docs/openapi.json"))
    assert set(ROUTES) <= set(spec["paths"])
    operation = spec["paths"]["/workflow/sdxl/txt2img"]["post"]
    assert operation["summary"] == "Text to image with Stable Diffusion XL"
    assert operation["description"].startswith("Generates images from a text prompt.")
    assert "a red fox in fresh snow" in json.dumps(operation["requestBody"])  # the declared example
    assert {"200", "202", "400", "503", "504"} <= set(operation["responses"])
    assert "PromptResponse" in json.dumps(operation["responses"]["200"])  # answered as POST /prompt answers

    inputs = input_schema(spec, "/workflow/sdxl/txt2img")
    assert inputs["required"] == ["prompt"] and inputs["additionalProperties"] is False
    ksampler = (await comfy_get(server, "/object_info/KSampler"))["KSampler"]["input"]["required"]
    assert inputs["properties"]["sampler_name"]["enum"] == ksampler["sampler_name"][0]
    assert inputs["properties"]["scheduler"]["enum"] == ksampler["scheduler"][0]
    checkpoint = inputs["properties"]["checkpoint"]
    assert checkpoint["enum"] == await comfy_get(server, "/models/checkpoints")
    assert checkpoint["default"] == CHECKPOINT  # the warmup graph's checkpoint
    assert inputs["properties"]["steps"] | {"minimum": 1, "maximum": 100} == inputs["properties"]["steps"]

    marked = input_schema(spec, "/workflow/sd15/txt2img")  # inputs declared in node titles, not a schema file
    assert marked["required"] == ["prompt"]
    assert marked["properties"]["sampler"]["default"] == "euler_ancestral"


@pytest.mark.parametrize(
    ("input_values", "field"),
    [
        ({"negative_prompt": "x"}, "input.prompt"),
        ({"prompt": "p", "steps": 101}, "input.steps"),
        ({"prompt": "p", "sampler_name": "magic"}, "input.sampler_name"),
        ({"prompt": "p", "checkpoint": "other.safetensors"}, "input.checkpoint"),
        ({"prompt": "p", "colour": "red"}, "input.colour"),
        ({"prompt": "p", "width": "wide"}, "input.width"),
    ],
)
async def test_invalid_input_is_a_400_naming_the_field_and_nothing_runs(
    server: ServerProcess, input_values: dict[str, Any], field: str
) -> None:
    before = len(await comfy_get(server, "/history"))
    response = await post(server, "/workflow/sdxl/txt2img", {"input": input_values})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["field"]) == ("invalid_request", field)
    assert field in error["message"]
    assert len(await comfy_get(server, "/history")) == before


async def test_prompt_options_are_checked_as_on_post_prompt(server: ServerProcess) -> None:
    for options, field in [({"timeout_s": -1}, "timeout_s"), ({"webhok": "x"}, "webhok"), ({"id": "../x"}, "id")]:
        response = await post(server, "/workflow/sdxl/txt2img", {"input": {"prompt": "p"}, **options})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["field"] == field
    too_long = await post(server, "/workflow/sdxl/txt2img", {"input": {"prompt": "p"}, "timeout_s": 10**9})
    assert too_long.status_code == 400 and too_long.json()["error"]["field"] == "timeout_s"


async def test_sdxl_txt2img_runs_with_defaults_from_the_schema_and_comfyui(server: ServerProcess) -> None:
    body = {"input": {"prompt": "a red fox", "steps": 2, "width": 512, "height": 512}, "id": "wf-sdxl-1"}
    response = await post(server, "/workflow/sdxl/txt2img", body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["id"] == "wf-sdxl-1"
    graph = result["prompt"]
    assert graph["6"]["inputs"]["text"] == "a red fox"
    assert graph["7"]["inputs"]["text"] == "blurry, low quality, watermark"  # the declared default
    assert graph["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    assert (graph["3"]["inputs"]["sampler_name"], graph["3"]["inputs"]["scheduler"]) == ("euler", "normal")
    assert isinstance(graph["3"]["inputs"]["seed"], int)  # randomized when omitted
    assert [output["kind"] for output in result["outputs"]] == ["image"]
    assert decode_image(result["images"][0]).size == (512, 512)


async def test_a_choice_offered_by_comfyui_is_accepted_and_applied(server: ServerProcess) -> None:
    offered = (await comfy_get(server, "/object_info/KSampler"))["KSampler"]["input"]["required"]["sampler_name"][0]
    body = {"input": {"prompt": "p", "steps": 1, "width": 512, "height": 512, "sampler_name": offered[-1], "seed": 5}}
    response = await post(server, "/workflow/sdxl/txt2img", body)
    assert response.status_code == 200, response.text
    inputs = response.json()["prompt"]["3"]["inputs"]
    assert (inputs["sampler_name"], inputs["seed"]) == (offered[-1], 5)


async def test_the_marked_sd15_workflow_runs(server: ServerProcess) -> None:
    response = await post(server, "/workflow/sd15/txt2img", {"input": {"prompt": "a lighthouse", "steps": 2}})
    assert response.status_code == 200, response.text
    graph = response.json()["prompt"]
    assert graph["6"]["inputs"]["text"] == "a lighthouse"
    assert graph["4"]["inputs"]["ckpt_name"] == CHECKPOINT
    assert graph["3"]["inputs"]["scheduler"] == "karras"  # not an input: the graph's own value
    assert decode_image(response.json()["images"][0]).size == (512, 512)


async def test_a_workflow_streams_its_events_as_post_prompt_does(server: ServerProcess) -> None:
    body = {"input": {"prompt": "p", "steps": 3, "width": 512, "height": 512}, "id": "wf-sse"}
    async with (
        httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client,
        client.stream(
            "POST", server.url("/workflow/sdxl/txt2img"), json=body, headers={"accept": "text/event-stream"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = (await response.aread()).decode()
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events[0] == "queued" and events[-1] == "complete" and "progress" in events


async def test_img2img_stages_its_image_and_answers_as_post_prompt_would(server: ServerProcess) -> None:
    missing = await post(server, "/workflow/sdxl/img2img", {"input": {"prompt": "p"}})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "input.input_image"
    image = base64.b64encode(png_bytes()).decode()
    body = {"input": {"prompt": "an oil painting", "input_image": image, "steps": 1}}
    response = await post(server, "/workflow/sdxl/img2img", body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["prompt"]["10"]["inputs"]["image"] == f"{answer['id']}/10-image.png"
    assert decode_image(answer["images"][0]).size == (8, 8)
    # Files only: a real ComfyUI makes an empty input/3d folder when it starts.
    assert not [path for path in server.dirs.input.rglob("*") if path.is_file()], "the staged image was left behind"


async def test_routes_and_docs_appear_once_comfyui_is_ready(tmp_path: Path) -> None:
    """While the manifest holds ComfyUI's start, /workflow/... is not there yet and /docs does not list it; once
    ready, both are, even though /docs was served before."""
    gate = asyncio.Event()
    async with serve_models(ModelServer(files={"/m/extra.safetensors": b"x" * 8}, gate=gate)) as models:
        manifest = {"models": {"before_start": [{"url": models.url("/m/extra.safetensors"), "local_path": "vae/x.st"}]}}
        env = {**workflow_env(tmp_path), "MANIFEST_JSON": json.dumps(manifest)}
        server = make_server(tmp_path / "run", env=env).start()
        try:

            async def provisioning() -> bool:
                try:
                    async with httpx.AsyncClient(timeout=5) as client:
                        return (await client.get(server.url("/ready"))).json()["phase"] == "provisioning"
                except httpx.TransportError:
                    return False

            await wait_until(provisioning, timeout_s=30)
            early = await get_json(server.url("/docs/openapi.json"))
            assert not [path for path in early["paths"] if path.startswith("/workflow/")]
            assert (await post(server, "/workflow/sdxl/txt2img", {"input": {"prompt": "p"}})).status_code == 404
            gate.set()
            await asyncio.to_thread(server.wait_ready)
            late = await get_json(server.url("/docs/openapi.json"))
            assert set(ROUTES) <= set(late["paths"])
            body = {"input": {"prompt": "p", "steps": 1, "width": 512, "height": 512}}
            assert (await post(server, "/workflow/sdxl/txt2img", body)).status_code == 200
        finally:
            await asyncio.to_thread(server.stop)


async def test_a_workflow_dir_that_cannot_be_served_stops_the_server_listing_the_problems(tmp_path: Path) -> None:
    env = workflow_env(tmp_path)
    broken = Path(env["WORKFLOW_DIR"]) / "broken.json"
    broken.write_text("{not json")
    (Path(env["WORKFLOW_DIR"]) / "sdxl" / "txt2img.yaml").write_text("inputs:\n  steps:\n    target: 3.inputs.nope\n")
    server = make_server(tmp_path / "run", env=env).start()
    try:
        assert await asyncio.to_thread(server.wait_exit, 60) == 1
        logs = server.logs()
        assert "broken.json: is not valid JSON" in logs
        assert "sdxl/txt2img.yaml" in logs
    finally:
        await asyncio.to_thread(server.stop)
