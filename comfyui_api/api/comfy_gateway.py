"""`/comfyui`: ComfyUI's own HTTP and websocket API, for clients written for ComfyUI (base URL
`http://host:3000/comfyui`). Not a blind proxy: `POST /prompt` goes through the job service (staging rules, limits,
admission, output isolation, a job record), `/history`, `/view`, `/queue` and `/interrupt` answer for those jobs,
and `/ws?clientId=` carries each job's frames to the client that queued it only (previews and SaveImageWebsocket
images as ComfyUI's binary frames). Read-only routes (`/object_info`, `/system_stats`, `/models`, ...) and uploads
into `input/` are passed on, streamed both ways; routes that change ComfyUI for everyone are refused unless
COMFYUI_PASSTHROUGH=full (then passed on as they are). The prompt id these clients see is the job id.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import mimetypes
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
from litestar import Controller, Request, Response, WebSocket, get, post, route, websocket
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath, FromQuery
from litestar.response import Stream

from comfyui_api.api.kept_files import kept_file
from comfyui_api.api.services import ServicesDependency
from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.dialects import comfy_native
from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.dialects.salad_request import to_job_request
from comfyui_api.errors import ComfyApiError, ComfyUnavailable, InvalidRequest, RequestError, WorkflowRejected
from comfyui_api.jobs.model import JobAccepted, JobCompleted, JobFailed, JobRequest, PreviewProduced
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.staging import is_safe_job_id
from comfyui_api.jobs.store import JobRecord

log = logging.getLogger(__name__)

GATEWAY_STATE_KEY = "comfy_gateway"
PASSTHROUGH_FULL = "full"
_READ_ONLY = ("object_info", "system_stats", "embeddings", "models", "features", "extensions", "prompt")
_KEPT_JOBS = 1000  # jobs whose /history this door answers (the job store may keep fewer)
_CLIENT_FRAMES = 10_000  # frames waiting for one slow websocket client before progress frames are dropped

Frame = dict[str, Any] | PreviewProduced
"""What a client's sockets are sent: a JSON frame, or a preview image that each socket renders as a binary frame
in the format it negotiated."""


class ComfyGateway:
    """The door's state: which jobs it queued (for whom, with which queue number) and the open websockets."""

    def __init__(self, jobs: JobService, *, passthrough: str):
        self.jobs = jobs
        self.passthrough = passthrough
        self._numbers = itertools.count(1)
        self._jobs: OrderedDict[str, tuple[str | None, int]] = OrderedDict()  # job id -> (client id, number)
        self._sockets: dict[str, set[asyncio.Queue[Frame]]] = {}
        self._forwarders: set[asyncio.Task[None]] = set()

    def number_of(self, job_id: str) -> int | None:
        known = self._jobs.get(job_id)
        return known[1] if known is not None else None

    def records(self) -> list[tuple[JobRecord, int]]:
        """The records of the jobs this door queued that the store still keeps, oldest first."""
        return list(self.newest_records())[::-1]

    def newest_records(self) -> Iterator[tuple[JobRecord, int]]:
        """The same, newest first, one at a time (a lookup that usually wants a recent job stops early)."""
        for job_id, (_, number) in reversed(self._jobs.items()):
            with contextlib.suppress(ComfyApiError):
                yield self.jobs.get(job_id), number

    def track(self, job_id: str, client_id: str | None) -> int:
        number = next(self._numbers)
        self._jobs[job_id] = (client_id, number)
        while len(self._jobs) > _KEPT_JOBS:
            self._jobs.popitem(last=False)
        if client_id is not None:
            task = asyncio.create_task(self._forward(job_id, client_id), name=f"comfyui-ws:{job_id}")
            self._forwarders.add(task)
            task.add_done_callback(self._forwarders.discard)
        return number

    def open(self, client_id: str) -> asyncio.Queue[Frame]:
        queue: asyncio.Queue[Frame] = asyncio.Queue(_CLIENT_FRAMES)
        self._sockets.setdefault(client_id, set()).add(queue)
        return queue

    def close(self, client_id: str, queue: asyncio.Queue[Frame]) -> None:
        queues = self._sockets.get(client_id, set())
        queues.discard(queue)
        if not queues:
            self._sockets.pop(client_id, None)

    async def aclose(self) -> None:
        for task in list(self._forwarders):
            task.cancel()
        await asyncio.gather(*self._forwarders, return_exceptions=True)

    async def _forward(self, job_id: str, client_id: str) -> None:
        """The job's events as ComfyUI frames, to every socket of the client that queued it (and to no other)."""
        native = comfy_native.JobFrames(job_id)
        async for item in self.jobs.subscribe(job_id):
            if item is None:
                continue
            event = item.event
            produced: list[Frame] = []
            if isinstance(event, PreviewProduced):
                produced.append(event)
            else:
                produced.extend(native.frames(event, self.jobs.registry.depth))
            for frame in produced:
                for queue in list(self._sockets.get(client_id, ())):
                    try:
                        queue.put_nowait(frame)
                    except asyncio.QueueFull:
                        log.debug("a /comfyui/ws client of %s is too slow: a frame of %s dropped", client_id, job_id)


async def submit_queued(gateway: ComfyGateway, job: JobRequest, client_id: str | None) -> JobRecord:
    """Submit through the job service and return once ComfyUI has taken the graph (`JobAccepted`); its refusal (or a
    staging failure) is raised, as ComfyUI's /prompt answers before it runs anything. The job is then the door's."""
    record = await gateway.jobs.submit(job)
    async for item in gateway.jobs.subscribe(record.id):
        if item is None:
            continue
        if isinstance(item.event, JobFailed):
            raise item.event.error
        if isinstance(item.event, JobAccepted | JobCompleted):
            break
    gateway.track(record.id, client_id)
    return record


def find_output(gateway: ComfyGateway, filename: str, subfolder: str, folder_type: str) -> tuple[Path, str] | None:
    """The kept file of an output of a job queued through the gateways, by ComfyUI's reference to it."""
    for record, _ in gateway.newest_records():
        if record.result is None or record.files_released:
            continue
        for output in record.result.outputs:
            wanted = (output.filename, output.subfolder, output.comfy_type) == (filename, subfolder, folder_type)
            if wanted and output.path is not None:
                guessed = mimetypes.guess_type(filename)[0]
                return output.path, output.content_type or guessed or "application/octet-stream"
    return None


GatewayDependency = NamedDependency[ComfyGateway]
"""Annotation for a handler parameter named `gateway`."""


def provide_gateway(state: State) -> ComfyGateway:
    gateway = state.get(GATEWAY_STATE_KEY)
    if not isinstance(gateway, ComfyGateway):
        raise ComfyUnavailable("the /comfyui door is not running")
    return gateway


async def read_json_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`); InvalidRequest naming `body` otherwise."""
    try:
        body = msgspec.json.decode((await request.body()).strip() or b"{}")
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"invalid JSON: {exc}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", field="body")
    return body


def _native(body: Any, status_code: int = 200) -> Response[Any]:
    return Response(body, status_code=status_code, media_type="application/json")


def _refused(what: str) -> Response[Any]:
    message = f"{what} changes ComfyUI for every client, so this server refuses it (COMFYUI_PASSTHROUGH=full allows it)"
    return _native({"error": {"type": "refused", "message": message}}, 403)


async def _forwarded(
    services: ServicesDependency, request: Request[Any, Any, Any], path: str, *, body: bytes | None = None
) -> Stream:
    """The request passed on to ComfyUI, its body (`body` when the handler has read it) and ComfyUI's answer
    streamed through."""
    content: bytes | AsyncIterator[bytes] | None = body
    if content is None and request.method not in ("GET", "HEAD"):
        content = request.stream()
    answer = await services.instance.client.forward(
        request.method,
        "/" + path,
        params=dict(request.query_params),
        content=content,
        content_type=request.headers.get("content-type"),
    )
    return Stream(answer.body, status_code=answer.status_code, media_type=answer.content_type)


class ComfyGatewayController(Controller):
    path = "/comfyui"
    tags = ["comfyui"]
    include_in_schema = False  # ComfyUI's own API: documented by ComfyUI
    dependencies = {"gateway": Provide(provide_gateway, sync_to_thread=False)}

    @post("/prompt", status_code=200)
    async def prompt(
        self, request: Request[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
    ) -> Response[Any]:
        try:
            body = await read_json_object(request)
            if not isinstance(body.get("prompt"), dict):
                raise InvalidRequest("the body must be an object with a `prompt` graph", field="prompt")
            graph = body["prompt"]
            if is_ui_format(graph):
                graph = await services.api_graph(graph)
            given = body.get("prompt_id")
            job_id = given if isinstance(given, str) and is_safe_job_id(given) else str(uuid.uuid4())
            request_body = PromptRequest(prompt=graph, id=job_id)
            job = to_job_request(request_body, services.settings.jobs, services.storage, source="comfyui")
        except ComfyApiError as exc:
            return _native(comfy_native.rejected(exc), 400)
        client_id = body.get("client_id")
        try:
            record = await submit_queued(gateway, job, client_id if isinstance(client_id, str) and client_id else None)
        except (WorkflowRejected, RequestError) as exc:
            return _native(comfy_native.rejected(exc), 400)
        number = gateway.number_of(record.id) or 0
        return _native(comfy_native.accepted(record.id, number))

    @get("/history/{prompt_id:str}")
    async def history_of(self, prompt_id: FromPath[str], gateway: GatewayDependency) -> Response[Any]:
        number = gateway.number_of(prompt_id)
        if number is None:
            return _native({})
        record = gateway.jobs.get(prompt_id)
        return _native({prompt_id: comfy_native.history_entry(record, number)} if record.is_terminal else {})

    @get("/history")
    async def history(self, gateway: GatewayDependency, max_items: FromQuery[int | None] = None) -> Response[Any]:
        ended = [(record, number) for record, number in gateway.records() if record.is_terminal]
        if max_items is not None:
            ended = ended[-max_items:] if max_items > 0 else []
        return _native({record.id: comfy_native.history_entry(record, number) for record, number in ended})

    @get("/queue")
    async def queue(self, gateway: GatewayDependency) -> Response[Any]:
        live = [(record, number) for record, number in gateway.records() if not record.is_terminal]
        return _native(
            {
                "queue_running": [comfy_native.queue_item(r, n) for r, n in live if r.status == "running"],
                "queue_pending": [comfy_native.queue_item(r, n) for r, n in live if r.status != "running"],
            }
        )

    @get("/view")
    async def view(
        self,
        request: Request[Any, Any, Any],
        services: ServicesDependency,
        gateway: GatewayDependency,
        filename: FromQuery[str],
        subfolder: FromQuery[str] = "",
        type: FromQuery[str] = "output",
    ) -> Response[Any]:
        found = find_output(gateway, filename, subfolder, type)
        answer = kept_file(found[0], filename=filename, media_type=found[1]) if found is not None else None
        if answer is not None:
            return answer
        if type == "input" and not subfolder:  # the clients' uploads; never the jobs' staged inputs (subfolders)
            return await _forwarded(services, request, "view")
        return _native({"error": {"type": "not_found", "message": f"no output {filename!r} of a job queued here"}}, 404)

    @post("/upload/image", status_code=200)
    async def upload(
        self, request: Request[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
    ) -> Response[Any]:
        body = await request.body()  # read once: the form is parsed from it, and it is passed on as it came
        if gateway.passthrough != PASSTHROUGH_FULL:
            form = await request.form()
            if str(form.get("subfolder") or "") or str(form.get("overwrite") or "").lower() == "true":
                return _refused("an upload into a subfolder of input/ or over an existing file")
            if str(form.get("type") or "input") != "input":
                return _refused("an upload outside input/")
        return await _forwarded(services, request, "upload/image", body=body)

    @post("/interrupt", status_code=200)
    async def interrupt(
        self, request: Request[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
    ) -> Response[Any]:
        prompt_id = (await read_json_object(request)).get("prompt_id")
        if isinstance(prompt_id, str) and gateway.number_of(prompt_id) is not None:
            await gateway.jobs.cancel(prompt_id, "interrupted through /comfyui/interrupt")
            return _native({})
        if gateway.passthrough == PASSTHROUGH_FULL:
            return await _forwarded(services, request, "interrupt", body=await request.body())
        return _refused("/interrupt without the prompt_id of a job queued here")

    @post("/queue", status_code=200)
    async def change_queue(
        self, request: Request[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
    ) -> Response[Any]:
        body = await read_json_object(request)
        deleted = body.get("delete")
        if body.get("clear") and gateway.passthrough != PASSTHROUGH_FULL:
            return _refused("clearing ComfyUI's queue")
        for prompt_id in deleted if isinstance(deleted, list) else ():
            if isinstance(prompt_id, str) and gateway.number_of(prompt_id) is not None:
                await gateway.jobs.cancel(prompt_id, "deleted through /comfyui/queue")
        if gateway.passthrough == PASSTHROUGH_FULL and body.get("clear"):
            return await _forwarded(services, request, "queue", body=await request.body())
        return _native({})

    @route("/{path:path}", http_method=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def other(
        self,
        path: FromPath[str],
        request: Request[Any, Any, Any],
        services: ServicesDependency,
        gateway: GatewayDependency,
    ) -> Response[Any]:
        path = path.lstrip("/")
        if gateway.passthrough == PASSTHROUGH_FULL:
            return await _forwarded(services, request, path)
        if request.method == "GET" and path.split("/", 1)[0] in _READ_ONLY:
            return await _forwarded(services, request, path)
        return _refused(f"{request.method} /{path}")


@websocket("/comfyui/ws", dependencies={"gateway": Provide(provide_gateway, sync_to_thread=False)})
async def comfy_websocket(
    socket: WebSocket[Any, Any, Any], services: ServicesDependency, gateway: GatewayDependency
) -> None:
    """ComfyUI's /ws: a `status` frame with the client's `sid`, then the frames of the jobs it queues, previews (and
    SaveImageWebsocket images) as binary frames: type 1, or type 4 with metadata once the client's first JSON frame
    asked for it (`feature_flags`, answered with this door's own)."""
    await socket.accept()
    client_id = socket.query_params.get("clientId") or uuid.uuid4().hex
    negotiated = _Negotiation(services.settings.server.max_body_bytes)
    await relay_frames(
        socket,
        gateway,
        client_id,
        first=comfy_native.status_frame(gateway.jobs.registry.depth, sid=client_id),
        read=lambda frames: negotiated.read(socket, frames),
        preview=lambda event: comfy_native.preview_frame(event, event.job_id, with_metadata=negotiated.metadata),
    )


class _Negotiation:
    """One socket's feature flags: ComfyUI reads the client's first JSON text frame (a frame that is not JSON does
    not count) and answers a `feature_flags` one with its own; anything else the client sends is ignored."""

    def __init__(self, max_upload_bytes: int):
        self.metadata = False
        self._max_upload_bytes = max_upload_bytes

    async def read(self, socket: WebSocket[Any, Any, Any], frames: asyncio.Queue[Frame]) -> None:
        decided = False
        while (message := await socket.receive())["type"] != "websocket.disconnect":
            text = message.get("text")
            if decided or not isinstance(text, str):
                continue
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            decided = True
            asked = comfy_native.asks_preview_metadata(parsed)
            if asked is not None:
                self.metadata = asked
                with contextlib.suppress(asyncio.QueueFull):
                    frames.put_nowait(comfy_native.feature_flags_frame(self._max_upload_bytes))


async def relay_frames(
    socket: WebSocket[Any, Any, Any],
    gateway: ComfyGateway,
    client_id: str,
    *,
    first: dict[str, Any],
    read: Callable[[asyncio.Queue[Frame]], Coroutine[Any, Any, None]],
    preview: Callable[[PreviewProduced], bytes] | None = None,
) -> None:
    """Send `first`, then every frame for `client_id`'s jobs (and whatever `read` puts in the same queue, e.g. its
    answers to what the client sends), until `read` returns (the client went away) or the socket breaks. Previews
    go out as `preview` renders them; without it they are left out."""
    frames = gateway.open(client_id)
    try:
        await socket.send_json(first)
        reader = asyncio.create_task(read(frames))
        try:
            while not reader.done():
                try:
                    frame = frames.get_nowait()  # a burst (the end of a run) goes out without waiting on the queue
                except asyncio.QueueEmpty:
                    getter = asyncio.create_task(frames.get())
                    done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    frame = getter.result()
                if not isinstance(frame, PreviewProduced):
                    await socket.send_json(frame)
                elif preview is not None:
                    await socket.send_bytes(preview(frame))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await reader
    except WebSocketDisconnect:
        pass
    finally:
        gateway.close(client_id, frames)
