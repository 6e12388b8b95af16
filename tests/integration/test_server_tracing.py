"""OpenTelemetry traces of jobs, as a collector receives them: the server (with the `otel` extra, an OTLP/HTTP
endpoint on loopback) sends one `job` span per job with a child per stage, in order, with the job's id, front
door, ComfyUI prompt id and outcome; a failed job's span and failing stage are marked as errors; the last spans
go out when the server stops."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import ServerProcess, image_graph, load_image_graph, start_server
from tests.servers.object_stores import moto_s3
from tests.servers.otlp import STATUS_ERROR, ExportedSpan, exported_spans
from tests.servers.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.slow]

BUCKET = "traced-outputs"


@pytest.fixture
async def collector() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


def children(spans: list[ExportedSpan], root: ExportedSpan) -> list[ExportedSpan]:
    found = [span for span in spans if span.parent_span_id == root.span_id]
    assert all(span.trace_id == root.trace_id for span in found)
    return sorted(found, key=lambda span: span.start_ns)


def root_of(spans: list[ExportedSpan], job_id: str) -> ExportedSpan:
    roots = [span for span in spans if span.name == "job" and span.attributes.get("job.id") == job_id]
    assert len(roots) == 1, [span.name for span in spans]
    assert roots[0].parent_span_id == ""
    return roots[0]


async def test_each_job_is_a_trace_with_a_span_per_stage(tmp_path: Path, collector: WebhookReceiver) -> None:
    with moto_s3(log_dir=tmp_path) as s3:
        s3.admin_client().create_bucket(Bucket=BUCKET)
        async with WebhookReceiver() as hooks:
            env = {
                "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url(""),
                "OTEL_EXPORTER_OTLP_HEADERS": "x-ingest-key=k%3D1",
                "OTEL_SERVICE_NAME": "api-under-test",
                "AWS_ENDPOINT_URL": s3.endpoint_url,
                "AWS_REGION": s3.region,
                "AWS_ACCESS_KEY_ID": "traced",
                "AWS_SECRET_ACCESS_KEY": "traced-secret",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            server: ServerProcess = await asyncio.to_thread(start_server, tmp_path / "api", env=env)
            try:
                async with httpx.AsyncClient(timeout=60) as http:
                    body = {
                        "prompt": image_graph(),
                        "id": "traced-ok",
                        "s3": {"bucket": BUCKET, "prefix": "traced/"},
                        "webhook_v2": hooks.url(),
                    }
                    accepted = await http.post(server.url("/prompt"), json=body)
                    assert accepted.status_code == 202, accepted.text
                    await hooks.wait_for(1, timeout_s=30)
                    missing = {"prompt": load_image_graph(f"missing-{uuid.uuid4().hex}.png"), "id": "traced-failed"}
                    failed = await http.post(server.url("/prompt"), json=missing)
                    assert failed.status_code >= 400, failed.text
            finally:
                await asyncio.to_thread(server.stop)  # the spans still buffered go out as the server stops

    exports = collector.received("/v1/traces")
    assert exports and all(request.headers.get("x-ingest-key") == "k=1" for request in exports)
    spans = exported_spans(exports)
    assert {span.resource.get("service.name") for span in spans} == {"api-under-test"}

    ok = root_of(spans, "traced-ok")
    assert ok.attributes["job.source"] == "http" and ok.attributes["job.status"] == "completed"
    assert str(uuid.UUID(ok.attributes["comfyui.prompt_id"])) == ok.attributes["comfyui.prompt_id"]
    assert ok.status_code != STATUS_ERROR
    stages = children(spans, ok)
    names = [span.name for span in stages]
    assert names == ["stage_inputs", "queue", "execute", "collect", "upload", "deliver"], names
    for earlier, later in itertools.pairwise(stages):
        assert earlier.end_ns <= later.start_ns, (earlier.name, later.name)  # one after another
    assert ok.start_ns <= stages[0].start_ns and stages[-2].end_ns <= ok.end_ns  # deliver: after the job ended
    assert all(span.status_code != STATUS_ERROR for span in stages)

    bad = root_of(spans, "traced-failed")
    assert bad.attributes["job.status"] == "failed" and bad.status_code == STATUS_ERROR
    assert bad.attributes["error.type"] and bad.status_message
    failing = children(spans, bad)
    assert [span.name for span in failing][:1] == ["stage_inputs"]
    assert failing[-1].status_code == STATUS_ERROR and failing[-1].name in ("queue", "execute")
