"""HTTP handlers for prompts, the queue, interrupt, free and history.

Bodies and status codes follow ComfyUI's server.py, including its text 500s: a malformed body raises inside
the handler and aiohttp answers `500 Internal Server Error`, exactly as ComfyUI does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web


def _member(body: Any, key: str, default: Any) -> Any:
    """`body[key]` when `key in body`: like ComfyUI's handlers this works for a JSON array body too (no match),
    where `.get()` would raise."""
    return body[key] if key in body else default  # noqa: SIM401 - see the docstring


_INVALID_PROMPT_ID = {
    "type": "invalid_prompt_id",
    "message": "prompt_id must be a valid UUID",
    "details": "prompt_id must be a UUID string in canonical lowercase hyphenated form; omit it to let the server "
    "generate one",
    "extra_info": {},
}
# ComfyUI 0.38+ (not 0.33.0) refuses a prompt_id it already holds; the simulator's wording of that answer.
_DUPLICATE_PROMPT_ID = {"type": "duplicate_prompt_id", "message": "prompt_id already exists", "extra_info": {}}


def is_canonical_uuid(value: Any) -> bool:
    """ComfyUI's validate_job_id: `str(uuid.UUID(v)) == v`, so only lowercase hyphenated UUID strings pass."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


if TYPE_CHECKING:
    from comfyui_api.simulator.simulator import Simulator

log = logging.getLogger("comfyui_api.simulator")


def add_routes(routes: web.RouteTableDef, sim: Simulator) -> None:
    @routes.get("/prompt")
    async def get_prompt(request: web.Request) -> web.Response:
        return web.json_response(sim.queue_info())

    @routes.post("/prompt")
    async def post_prompt(request: web.Request) -> web.Response:
        log.info("got prompt")
        json_data = await request.json()
        if "number" in json_data:
            number = float(json_data["number"])
        else:
            number = sim.number
            if _member(json_data, "front", False):
                number = -number
            sim.number += 1
        if "prompt" not in json_data:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return web.json_response({"error": error, "node_errors": {}}, status=400)
        prompt = json_data["prompt"]
        profile = sim.config.profile
        if profile.uuid_prompt_ids:
            prompt_id = json_data.get("prompt_id")
            if prompt_id is None:
                prompt_id = str(uuid.uuid4())
            elif not is_canonical_uuid(prompt_id):
                return web.json_response({"error": _INVALID_PROMPT_ID, "node_errors": {}}, status=400)
            elif sim.config.reject_duplicate_prompt_ids and sim.queue.knows(prompt_id):
                error = {**_DUPLICATE_PROMPT_ID, "details": f"prompt_id {prompt_id} already exists"}
                return web.json_response({"error": error, "node_errors": {}}, status=409)
        else:
            prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        if profile.list_prompt_is_500 and not isinstance(prompt, dict):
            # 0.33 rewrites registered node replacements before validating: a non-object prompt raises there.
            raise TypeError("prompt must be an object")
        partial = _member(json_data, "partial_execution_targets", None)
        verdict = sim.validator.validate(prompt, partial)
        extra_data = _member(json_data, "extra_data", {})
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if profile.create_time:
            extra_data["create_time"] = int(time.time() * 1000)
        if verdict.ok:
            sim.queue.put((number, prompt_id, prompt, extra_data, verdict.good_outputs))
            return web.json_response({"prompt_id": prompt_id, "number": number, "node_errors": verdict.node_errors})
        log.warning("invalid prompt: %s", verdict.error)
        return web.json_response({"error": verdict.error, "node_errors": verdict.node_errors}, status=400)

    @routes.get("/queue")
    async def get_queue(request: web.Request) -> web.Response:
        running, pending = sim.queue.current()
        return web.json_response({"queue_running": running, "queue_pending": pending})

    @routes.post("/queue")
    async def post_queue(request: web.Request) -> web.Response:
        json_data = await request.json()
        if _member(json_data, "clear", False):
            sim.queue.wipe()
        if "delete" in json_data:
            for prompt_id in json_data["delete"]:
                sim.queue.delete(prompt_id)
        return web.Response(status=200)

    @routes.post("/interrupt")
    async def post_interrupt(request: web.Request) -> web.Response:
        try:
            json_data = await request.json()
        except json.JSONDecodeError:
            json_data = {}
        prompt_id = json_data.get("prompt_id")
        if prompt_id:
            if prompt_id in sim.queue.running_ids():
                log.info("Interrupting prompt %s", prompt_id)
                sim.executor.request_interrupt()
            else:
                log.info("Prompt %s is not currently running, skipping interrupt", prompt_id)
        else:
            log.info("Global interrupt (no prompt_id specified)")
            sim.executor.request_interrupt()
        return web.Response(status=200)

    @routes.post("/free")
    async def post_free(request: web.Request) -> web.Response:
        json_data = await request.json()
        unload_models = json_data.get("unload_models", False)
        free_memory = json_data.get("free_memory", False)
        if unload_models:
            sim.queue.set_flag("unload_models", unload_models)
        if free_memory:
            sim.queue.set_flag("free_memory", free_memory)
        return web.Response(status=200)

    @routes.get("/history")
    async def get_history(request: web.Request) -> web.Response:
        max_items = request.rel_url.query.get("max_items", None)
        offset = request.rel_url.query.get("offset", None)
        return web.json_response(
            sim.queue.history(
                max_items=int(max_items) if max_items is not None else None,
                offset=int(offset) if offset is not None else -1,
            )
        )

    @routes.get("/history/{prompt_id}")
    async def get_history_item(request: web.Request) -> web.Response:
        return web.json_response(sim.queue.history_item(request.match_info["prompt_id"]))

    @routes.post("/history")
    async def post_history(request: web.Request) -> web.Response:
        json_data = await request.json()
        if _member(json_data, "clear", False):
            sim.queue.wipe_history()
        if "delete" in json_data:
            for prompt_id in json_data["delete"]:
                sim.queue.delete_history(prompt_id)
        return web.Response(status=200)
