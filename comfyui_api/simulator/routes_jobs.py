"""The jobs API of ComfyUI >= ~0.6 (`/api/jobs`; the cancel routes since ~0.26), for profiles that have it.

Built from the queue and the history as ComfyUI builds it: status mapping (running -> in_progress, pending, history
success -> completed, error -> failed, error after an interrupt -> cancelled), values left out when unknown, and the
same 400/404 bodies. Reads the queue; changes it only through dequeue and interrupt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from comfyui_api.simulator.routes_prompt import is_canonical_uuid

if TYPE_CHECKING:
    from comfyui_api.simulator.simulator import Simulator

STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
_PREVIEWABLE = ("images", "video", "videos", "audio", "gifs", "3d")


def _outputs_summary(outputs: Mapping[str, Any]) -> tuple[int, int, dict[str, Any] | None]:
    """(outputs_count, previewable_outputs_count, preview_output): file items count, text and flags do not."""
    count = previewable = 0
    preview: dict[str, Any] | None = None
    for node_id, node_outputs in outputs.items():
        if not isinstance(node_outputs, Mapping):
            continue
        for media_type, items in node_outputs.items():
            for item in items if isinstance(items, list) else []:
                if not isinstance(item, Mapping) or "filename" not in item:
                    continue
                count += 1
                if media_type in _PREVIEWABLE:
                    previewable += 1
                    if preview is None:
                        preview = {**item, "nodeId": node_id, "mediaType": media_type}
    return count, previewable, preview


def _base(item: Any, status: str) -> dict[str, Any]:
    extra = item[3] if isinstance(item[3], Mapping) else {}
    job: dict[str, Any] = {"id": item[1], "status": status, "priority": item[0]}
    if "create_time" in extra:
        job["create_time"] = extra["create_time"]
    return job


def _workflow_id(extra: Mapping[str, Any]) -> Any:
    pnginfo = extra.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, Mapping) else None
    return workflow.get("id") if isinstance(workflow, Mapping) else None


def _finished(prompt_id: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    status = entry.get("status") or {}
    messages = [m for m in status.get("messages", []) if isinstance(m, list) and len(m) == 2]
    kinds = {name for name, _ in messages}
    if status.get("status_str") == "success":
        state = "completed"
    else:
        state = "cancelled" if "execution_interrupted" in kinds else "failed"
    job = _base(entry["prompt"], state)
    for name, data in messages:
        if name == "execution_start":
            job["execution_start_time"] = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            job["execution_end_time"] = data.get("timestamp")
    count, previewable, preview = _outputs_summary(entry.get("outputs") or {})
    job["outputs_count"], job["previewable_outputs_count"] = count, previewable
    if preview is not None:
        job["preview_output"] = preview
    for name, data in messages:
        if name == "execution_error":
            job["execution_error"] = data
    extra = entry["prompt"][3] if isinstance(entry["prompt"][3], Mapping) else {}
    if (workflow_id := _workflow_id(extra)) is not None:
        job["workflow_id"] = workflow_id
    return job


def _queued(item: Any, status: str) -> dict[str, Any]:
    job = _base(item, status)
    job.update(outputs_count=0, previewable_outputs_count=0)
    extra = item[3] if isinstance(item[3], Mapping) else {}
    if (workflow_id := _workflow_id(extra)) is not None:
        job["workflow_id"] = workflow_id
    return job


def _all_jobs(sim: Simulator) -> list[tuple[dict[str, Any], Any]]:
    """(job, its queue item or history entry) for every job ComfyUI knows."""
    running, pending = sim.queue.current()
    found: list[tuple[dict[str, Any], Any]] = [(_queued(item, "in_progress"), item) for item in running]
    found += [(_queued(item, "pending"), item) for item in pending]
    for prompt_id, entry in sim.queue.history().items():
        found.append((_finished(prompt_id, entry), entry))
    return found


def add_routes(routes: web.RouteTableDef, sim: Simulator) -> None:
    @routes.get("/api/jobs")
    async def list_jobs(request: web.Request) -> web.Response:
        query = request.rel_url.query
        wanted = [s.strip() for s in query.get("status", "").split(",") if s.strip()]
        bad = [s for s in wanted if s not in STATUSES]
        if bad:
            message = f"Invalid status value(s): {', '.join(bad)}. Valid values: {', '.join(STATUSES)}"
            return web.json_response({"error": message}, status=400)
        sort_by = query.get("sort_by", "created_at")
        if sort_by not in ("created_at", "execution_duration"):
            return web.json_response({"error": "sort_by must be 'created_at' or 'execution_duration'"}, status=400)
        descending = query.get("sort_order", "desc") != "asc"
        try:
            limit = int(query["limit"]) if "limit" in query else None
            offset = int(query.get("offset", "0"))
        except ValueError:
            return web.json_response({"error": "limit and offset must be integers"}, status=400)
        if (limit is not None and limit <= 0) or offset < 0:
            return web.json_response({"error": "limit must be positive and offset non-negative"}, status=400)
        jobs = [job for job, _ in _all_jobs(sim) if not wanted or job["status"] in wanted]
        workflow_id = query.get("workflow_id")
        if workflow_id:
            jobs = [job for job in jobs if job.get("workflow_id") == workflow_id]

        def key(job: dict[str, Any]) -> float:
            if sort_by == "execution_duration":
                return float(job.get("execution_end_time", 0) - job.get("execution_start_time", 0))
            return float(job.get("create_time", 0))

        jobs.sort(key=key, reverse=descending)
        page = jobs[offset : offset + limit if limit is not None else None]
        has_more = offset + len(page) < len(jobs)
        pagination = {"offset": offset, "limit": limit, "total": len(jobs), "has_more": has_more}
        return web.json_response({"jobs": page, "pagination": pagination})

    @routes.get("/api/jobs/{job_id}")
    async def get_job(request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        for job, source in _all_jobs(sim):
            if job["id"] != job_id:
                continue
            if isinstance(source, Mapping):  # a history entry
                job["outputs"] = source.get("outputs") or {}
                job["execution_status"] = source.get("status")
                item = source["prompt"]
            else:
                item = source
            job["workflow"] = {"prompt": item[2], "extra_data": item[3]}
            return web.json_response(job)
        return web.json_response({"error": "Job not found"}, status=404)

    @routes.post("/api/jobs/{job_id}/cancel")
    async def cancel_job(request: web.Request) -> web.Response:
        return web.json_response({"cancelled": _cancel(sim, request.match_info["job_id"])})

    @routes.post("/api/jobs/cancel")
    async def cancel_jobs(request: web.Request) -> web.Response:
        body = await request.json()
        job_ids = body.get("job_ids") if isinstance(body, Mapping) else None
        if not isinstance(job_ids, list):
            return web.json_response({"error": "job_ids must be a list"}, status=400)
        invalid = [j for j in job_ids if not is_canonical_uuid(j)]
        if invalid:
            return web.json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status=400)
        cancelled = [_cancel(sim, job_id) for job_id in job_ids]
        return web.json_response({"cancelled": any(cancelled)})


def _cancel(sim: Simulator, job_id: str) -> bool:
    """Dequeue when pending, interrupt when running; False when finished or unknown."""
    if sim.queue.delete(job_id):
        return True
    if job_id in sim.queue.running_ids():
        sim.executor.request_interrupt()
        return True
    return False
