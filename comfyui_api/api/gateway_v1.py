"""`/api/v1`: the contract of a FastAPI gateway in front of ComfyUI, for its existing clients. Every answer is the
gateway's envelope (`dialects/gateway_v1.py`); jobs go through the job service and share the `/comfyui` door's
bookkeeping (queue numbers, /history, outputs by file name), so a prompt id from one door is known to the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, WebSocket, get, post, websocket
from litestar.di import Provide
from litestar.params import FromPath, FromQuery

from comfyui_api.api.comfy_gateway import (
    ComfyGateway,
    Frame,
    GatewayDependency,
    find_output,
    provide_gateway,
    read_json_object,
    relay_frames,
    submit_queued,
)
from comfyui_api.api.kept_files import kept_file
from comfyui_api.api.services import Services, ServicesDependency
from comfyui_api.api.workflow_routes import loaded_catalog
from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.dialects import comfy_native, gateway_v1
from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.dialects.salad_request import to_job_request
from comfyui_api.errors import ComfyApiError, ComfyUnavailable, InvalidRequest, JobNotFound, NotFound
from comfyui_api.jobs.store import JobRecord

SCENARIOS = "scenarios"  # WORKFLOW_DIR/scenarios/<name>.json is served as POST /api/v1/scenarios/<name>


def _ok(data: Any) -> Response[Any]:
    return Response(gateway_v1.envelope(data), status_code=200)


def _failed(error: ComfyApiError) -> Response[Any]:
    return Response(gateway_v1.error_envelope(error), status_code=error.status_code)


class GatewayV1Controller(Controller):
    path = "/api/v1"
    tags = ["gateway v1"]
    include_in_schema = False  # the gateway's own contract, in its envelope (README: /api/v1)
    dependencies = {"gateway": Provide(provide_gateway, sync_to_thread=False)}

    @post("/workflows/submit", status_code=200, summary="Queue a workflow; answers once ComfyUI has taken it")
    async def submit(
        self, request: Request[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
    ) -> Response[Any]:
        try:
            body = await read_json_object(request)
            client_id = _client_id(body.get("client_id"))
            record = await _submit_graph(await _workflow_graph(body, services), client_id, services, gateway)
        except ComfyApiError as exc:
            return _failed(exc)
        return _ok({"prompt_id": record.id, "client_id": client_id})

    @post("/scenarios/{name:str}", status_code=200, summary="Run a scenario (WORKFLOW_DIR/scenarios/<name>)")
    async def scenario(
        self,
        name: FromPath[str],
        request: Request[Any, Any, Any],
        services: ServicesDependency,
        gateway: GatewayDependency,
    ) -> Response[Any]:
        """A typed workflow endpoint under the gateway's envelope: the body is the scenario's inputs (plus an
        optional `client_id`); answers `{prompt_id, scenario, client_id}` once ComfyUI has the job."""
        try:
            catalog = loaded_catalog(request.app)
            workflow = catalog.get(f"{SCENARIOS}/{name}") if catalog is not None else None
            if workflow is None:
                raise NotFound(f"no scenario named {name!r} (a workflow in WORKFLOW_DIR/{SCENARIOS}/{name}.json)")
            body = await read_json_object(request)
            client_id = _client_id(body.pop("client_id", None))
            record = await _submit_graph(workflow.bind(body), client_id, services, gateway)
        except ComfyApiError as exc:
            return _failed(exc)
        return _ok({"prompt_id": record.id, "scenario": name, "client_id": client_id})

    @get("/workflows/{prompt_id:str}/history", summary="A workflow's outputs (empty until it has ended)")
    async def history(self, prompt_id: FromPath[str], gateway: GatewayDependency) -> Response[Any]:
        try:
            record = gateway.jobs.get(prompt_id)
        except JobNotFound as exc:
            return _failed(exc)
        outputs = comfy_native.node_outputs(list(record.result.outputs)) if record.result is not None else {}
        return _ok({"prompt_id": prompt_id, "outputs": outputs, "status": record.status})

    @post("/workflows/interrupt", status_code=200, summary="Stop a queued or running workflow")
    async def interrupt(self, request: Request[Any, Any, Any], gateway: GatewayDependency) -> Response[Any]:
        try:
            body = await read_json_object(request)
            prompt_id = body.get("prompt_id")
            if not isinstance(prompt_id, str):
                raise InvalidRequest("prompt_id is required", field="prompt_id")
            gateway.jobs.get(prompt_id)  # JobNotFound naming it
            interrupted = await gateway.jobs.cancel(prompt_id, "interrupted through /api/v1/workflows/interrupt")
        except ComfyApiError as exc:
            return _failed(exc)
        return _ok({"prompt_id": prompt_id, "interrupted": interrupted})

    @get("/queue/status", summary="Jobs queued through the gateways: running and pending")
    async def queue_status(self, gateway: GatewayDependency) -> Response[Any]:
        live = [(record, number) for record, number in gateway.records() if not record.is_terminal]
        running = [_queue_entry(r, n) for r, n in live if r.status == "running"]
        pending = [_queue_entry(r, n) for r, n in live if r.status != "running"]
        data = {
            "queue_running": running,
            "queue_pending": pending,
            "running_count": len(running),
            "pending_count": len(pending),
        }
        return _ok(data)

    @post("/queue/clear", status_code=200, summary="Cancel the pending jobs queued through the gateways")
    async def queue_clear(self, request: Request[Any, Any, Any], gateway: GatewayDependency) -> Response[Any]:
        try:
            body = await read_json_object(request)
        except ComfyApiError as exc:
            return _failed(exc)
        if body.get("clear") is not True:
            return _failed(InvalidRequest('send {"clear": true} to clear the queue', field="clear"))
        cleared = [
            record.id
            for record, _ in gateway.records()
            if record.status == "queued" and await gateway.jobs.cancel(record.id, "cleared through /api/v1/queue/clear")
        ]
        return _ok({"cleared": cleared})

    @post("/images/upload", status_code=200, summary="Upload an image into ComfyUI's input folder")
    async def upload(self, request: Request[Any, Any, Any], services: ServicesDependency) -> Response[Any]:
        form = await request.form()
        upload = form.get("file")
        if upload is None or not hasattr(upload, "read"):
            return _failed(InvalidRequest("a multipart `file` is required", field="file"))
        overwrite = str(form.get("overwrite") or "false").lower() == "true"
        try:
            data = await upload.read()
            name = await services.instance.client.upload_image(
                data, getattr(upload, "filename", None) or "upload.png", overwrite=overwrite
            )
        except ComfyUnavailable as exc:
            return _failed(exc)
        except ComfyApiError as exc:
            failed = gateway_v1.envelope(None, exc.message, gateway_v1.FILE_OPERATION_FAILED)
            return Response(failed, status_code=400)
        return _ok({"filename": name, "name": name, "local_path": f"input/{name}"})

    @get("/images/download", summary="An output (or an uploaded input) by ComfyUI's file reference")
    async def download(
        self,
        gateway: GatewayDependency,
        filename: FromQuery[str],
        subfolder: FromQuery[str] = "",
        img_type: FromQuery[str] = "output",
    ) -> Response[Any]:
        found = find_output(gateway, filename, subfolder, img_type)
        answer = kept_file(found[0], filename=filename, media_type=found[1]) if found is not None else None
        if answer is None:
            return _failed(JobNotFound(f"no file {filename!r} ({img_type}) known here", field="filename"))
        return answer

    @get("/images/url", summary="Where an output can be downloaded from this server")
    async def url(
        self,
        request: Request[Any, Any, Any],
        filename: FromQuery[str],
        subfolder: FromQuery[str] = "",
        img_type: FromQuery[str] = "output",
    ) -> Response[Any]:
        base = str(request.base_url).rstrip("/")  # this server: ComfyUI's own address is never handed out
        query = urlencode({"filename": filename, "subfolder": subfolder, "img_type": img_type})
        return _ok({"url": f"{base}/api/v1/images/download?{query}", "filename": filename})


def _client_id(given: Any) -> str:
    """The client id a request names, else a fresh one."""
    return given if isinstance(given, str) and given else uuid.uuid4().hex


async def _workflow_graph(body: Mapping[str, Any], services: Services) -> dict[str, Any]:
    """`body["workflow"]` in the API format (one saved from the editor is converted)."""
    workflow = body.get("workflow")
    if not isinstance(workflow, dict):
        raise InvalidRequest("workflow must be a ComfyUI graph (an object)", field="workflow")
    return await services.api_graph(workflow, field="workflow") if is_ui_format(workflow) else workflow


async def _submit_graph(graph: dict[str, Any], client_id: str, services: Services, gateway: ComfyGateway) -> JobRecord:
    """A graph through the job service, for `client_id`'s frames; returns once ComfyUI has taken it."""
    job = to_job_request(PromptRequest(prompt=graph), services.settings.jobs, services.storage, source="api_v1")
    return await submit_queued(gateway, job, client_id)


@websocket("/api/v1/ws/{client_id:str}", dependencies={"gateway": Provide(provide_gateway, sync_to_thread=False)})
async def gateway_websocket(
    socket: WebSocket[Any, Any, Any], client_id: FromPath[str], services: ServicesDependency, gateway: GatewayDependency
) -> None:
    """The gateway's websocket: `connected`, then answers to `submit` / `ping` and the frames of this client's jobs
    (ComfyUI's own: `executing`, `progress`, `executed`, ..., `execution_success`)."""
    await socket.accept()

    async def read(replies: asyncio.Queue[Frame]) -> None:
        while (message := await socket.receive())["type"] != "websocket.disconnect":
            raw = message.get("text") or message.get("bytes") or ""
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            reply = await _answer(text, client_id, services, gateway)
            with contextlib.suppress(asyncio.QueueFull):  # a client that reads nothing loses answers, not the server
                replies.put_nowait(reply)

    await relay_frames(
        socket, gateway, client_id, first=gateway_v1.ws_message("connected", {"client_id": client_id}), read=read
    )


async def _answer(text: str, client_id: str, services: Services, gateway: ComfyGateway) -> dict[str, Any]:
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        return gateway_v1.ws_message("error", {"message": 'a message is a JSON object: {"type": "submit" | "ping"}'})
    kind = request.get("type")
    if kind == "ping":
        return gateway_v1.ws_message("pong")
    if kind != "submit":
        return gateway_v1.ws_message("error", {"message": f"unknown message type {kind!r}: submit or ping"})
    data = request.get("data")
    try:
        if not isinstance(data, dict):
            raise InvalidRequest("data must be an object holding the workflow", field="data")
        record = await _submit_graph(await _workflow_graph(data, services), client_id, services, gateway)
    except ComfyApiError as exc:
        return gateway_v1.ws_message("submit_error", gateway_v1.error_envelope(exc))
    return gateway_v1.ws_message("submit_success", {"prompt_id": record.id, "client_id": client_id})


def _queue_entry(record: JobRecord, number: int) -> dict[str, Any]:
    return {"prompt_id": record.id, "number": number, "timestamp": record.created_at}
