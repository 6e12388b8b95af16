"""The job API: GET /jobs, GET /jobs/{id}, GET /jobs/{id}/events (SSE: replay, then live; Last-Event-ID resumes),
GET /jobs/{id}/outputs/{index}, POST /jobs/{id}/cancel and POST /jobs/{id}/redeliver. Thin: every answer comes from
the job service's records.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream

from comfyui_api.api.kept_files import kept_file
from comfyui_api.api.progress_stream import job_event_stream, last_event_id
from comfyui_api.api.schemas import ERROR_RESPONSES, CancelResponse, JobListResponse, JobView, RedeliverResponse
from comfyui_api.api.services import ServicesDependency
from comfyui_api.dialects.salad_body import stats_body
from comfyui_api.errors import InvalidRequest, JobNotFound
from comfyui_api.jobs.store import JobRecord

_JOB_ERRORS = {404: ERROR_RESPONSES[404], 400: ERROR_RESPONSES[400]}


def output_url(job_id: FromPath[str], index: int) -> str:
    return f"/jobs/{job_id}/outputs/{index}"


def job_view(record: JobRecord) -> JobView:
    """The record as the API shows it; `outputs[i].url` is the storage URL when uploaded, else where it is served."""
    outputs: list[dict[str, Any]] = []
    result = record.result
    for index, output in enumerate(result.outputs if result is not None else []):
        url = output.url
        if url is None and output.path is not None and not record.files_released:
            url = output_url(record.id, index)
        entry: dict[str, Any] = {
            "node_id": output.node_id,
            "kind": output.kind,
            "filename": output.filename,
            "content_type": output.content_type,
            "size_bytes": output.size_bytes,
            "url": url,
        }
        if output.error is not None:
            entry["error"] = output.error
        outputs.append(entry)
    webhook = record.webhook
    return JobView(
        id=record.id,
        status=record.status,
        created_at=record.created_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
        queue_position=record.queue_position,
        progress={"percent": round(record.percent, 2), "node": record.node},
        outputs=outputs,
        texts=list(result.texts) if result is not None else [],
        error=record.error.to_dict() if record.error is not None else None,
        stats=stats_body(result.stats) if result is not None else None,
        metadata=dict(record.request.metadata) if record.request.metadata is not None else None,
        webhook=(
            {"url": webhook.url, "state": webhook.state, "attempts": webhook.attempts, "last_error": webhook.last_error}
            if webhook is not None
            else None
        ),
    )


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]

    @get(summary="List jobs, newest first", responses={400: ERROR_RESPONSES[400]}, sync_to_thread=False)
    def list_jobs(
        self,
        services: ServicesDependency,
        status: Annotated[
            str | None, QueryParameter(description="queued | running | completed | failed | cancelled")
        ] = None,
        limit: Annotated[int, QueryParameter(description="at most this many jobs (1-500)")] = 50,
        cursor: Annotated[str | None, QueryParameter(description="next_cursor of the previous page")] = None,
    ) -> JobListResponse:
        records, next_cursor = services.jobs.list(status=status, limit=limit, cursor=cursor)
        return JobListResponse(jobs=[job_view(record) for record in records], next_cursor=next_cursor)

    @get(
        "/{job_id:str}",
        summary="One job: status, progress, outputs, error",
        responses=_JOB_ERRORS,
        sync_to_thread=False,
    )
    def get_job(self, job_id: FromPath[str], services: ServicesDependency) -> JobView:
        return job_view(services.jobs.get(job_id))

    @get(
        "/{job_id:str}/events",
        summary="The job's events as Server-Sent Events: what happened so far, then live, then complete or failed",
        responses={200: ResponseSpec(None, description="text/event-stream"), **_JOB_ERRORS},
        sync_to_thread=False,
    )
    def events(self, job_id: FromPath[str], services: ServicesDependency, request: Request[Any, Any, Any]) -> Stream:
        record = services.jobs.get(job_id)
        after_seq = last_event_id(request.headers.get("last-event-id"))
        heartbeat_s = services.settings.server.sse_heartbeat_s
        return job_event_stream(record, services.jobs.registry, heartbeat_s=heartbeat_s, after_seq=after_seq)

    @get(
        "/{job_id:str}/outputs/{index:int}",
        summary="One output's bytes, while the record keeps them",
        responses={200: ResponseSpec(None, description="the output file"), **_JOB_ERRORS},
        sync_to_thread=False,
    )
    def output(self, job_id: FromPath[str], index: FromPath[int], services: ServicesDependency) -> Response[Any]:
        record = services.jobs.get(job_id)
        result = record.result
        if result is None:
            raise JobNotFound(f"job {job_id} has no outputs ({record.status})", field="index")
        if not 0 <= index < len(result.outputs):
            raise JobNotFound(
                f"job {job_id} has {len(result.outputs)} output(s); there is no index {index}", field="index"
            )
        output = result.outputs[index]
        kept = None
        if output.path is not None and not record.files_released:
            kept = kept_file(output.path, filename=output.filename, media_type=output.content_type)
        if kept is None:
            where = f"; it was uploaded to {output.url}" if output.url else ""
            raise JobNotFound(f"output {index} of job {job_id} is no longer kept{where}", field="index")
        return kept

    @post("/{job_id:str}/cancel", summary="Cancel a queued or running job (idempotent)", status_code=200)
    async def cancel(self, job_id: FromPath[str], services: ServicesDependency) -> CancelResponse:
        return CancelResponse(id=job_id, cancelled=await services.jobs.cancel(job_id))

    @post(
        "/{job_id:str}/redeliver",
        summary="Send the job's webhook again",
        status_code=202,
        responses=_JOB_ERRORS,
    )
    async def redeliver(self, job_id: FromPath[str], services: ServicesDependency) -> RedeliverResponse:
        record = services.jobs.get(job_id)
        if services.webhooks is None:
            raise InvalidRequest("webhooks are not running on this server", field="id")
        await services.webhooks.redeliver(record)
        assert record.webhook is not None
        return RedeliverResponse(id=job_id, webhook=record.webhook.url, state=record.webhook.state)
