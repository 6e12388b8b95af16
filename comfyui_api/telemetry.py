"""OpenTelemetry traces of jobs: a span per job (`job`, with its id, front door, ComfyUI prompt id and outcome)
and a child span per stage (`stage_inputs`, `queue`, `execute`, `collect`, `upload`, `deliver`), exported over
OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT`. Needs the `otel` extra (opentelemetry-sdk and its OTLP/HTTP exporter),
imported only when an endpoint is configured. The tracer provider is this runtime's own, never the process-wide
one, and `shutdown()` sends what is still buffered."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from comfyui_api.errors import ComfyApiError
from comfyui_api.jobs.model import JobRequest
from comfyui_api.jobs.tracing import NO_TRACER, JobTrace, JobTracer, StageSpan
from comfyui_api.settings import TracingSettings
from comfyui_api.version import package_version

log = logging.getLogger(__name__)

EXPORT_TIMEOUT_S = 10.0  # one export request to the collector
EXPORT_DELAY_MS = 2000  # how long finished spans wait to be sent together


class _Stage:
    def __init__(self, span: Any):
        self._span = span

    def end(self, error: BaseException | None = None) -> None:
        if isinstance(error, asyncio.CancelledError):  # the job was cancelled or the server is stopping
            self._span.set_attribute("stage.cancelled", True)
        elif error is not None:
            _mark_failed(self._span, error)
        self._span.end()


class _JobTrace:
    def __init__(self, tracer: Any, span: Any):
        self._tracer = tracer
        self._span = span
        self._context = _context_of(span)

    def stage(self, name: str) -> StageSpan:
        return _Stage(self._tracer.start_span(name, context=self._context))

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute(key, value)

    def end(self, status: str, error: BaseException | None = None) -> None:
        self._span.set_attribute("job.status", status)
        if error is not None and status != "cancelled":
            _mark_failed(self._span, error)
        elif error is not None:
            self._span.set_attribute("job.cancel_reason", str(error))
        self._span.end()


class OtelJobTracer:
    """A JobTracer over an OpenTelemetry tracer provider of its own. `exporter` replaces the OTLP/HTTP one (an
    in-memory exporter, in tests)."""

    def __init__(self, settings: TracingSettings, *, exporter: Any = None):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create({"service.name": settings.service_name, "service.version": package_version()})
        self._provider = TracerProvider(resource=resource)
        if exporter is None:
            assert settings.otlp_endpoint is not None
            exporter = OTLPSpanExporter(
                endpoint=settings.otlp_endpoint.rstrip("/") + "/v1/traces",
                headers=dict(settings.otlp_headers),
                timeout=EXPORT_TIMEOUT_S,
            )
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
        self._tracer = self._provider.get_tracer("comfyui_api", package_version())

    def start_job(self, request: JobRequest) -> JobTrace:
        attributes: dict[str, str | bool] = {
            "job.id": request.id,
            "job.source": request.source,
            "job.async": request.run_async,
        }
        return _JobTrace(self._tracer, self._tracer.start_span("job", attributes=attributes))

    def shutdown(self) -> None:
        """Send the spans still buffered (bounded by the export timeout) and stop."""
        self._provider.shutdown()


def job_tracer(settings: TracingSettings) -> tuple[JobTracer, OtelJobTracer | None]:
    """The tracer the job service reports to, and the OpenTelemetry one to shut down (None when tracing is off:
    no endpoint, or the `otel` extra is missing, which is logged)."""
    if settings.otlp_endpoint is None:
        return NO_TRACER, None
    try:
        tracer = OtelJobTracer(settings)
    except ImportError as exc:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed (%s): no traces are sent; "
            "pip install 'comfyui-api[otel]'",
            exc,
        )
        return NO_TRACER, None
    log.info("job traces go to %s over OTLP/HTTP", settings.otlp_endpoint)
    return tracer, tracer


def _context_of(span: Any) -> Any:
    from opentelemetry import trace

    return trace.set_span_in_context(span)


def _mark_failed(span: Any, error: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    kind = error.kind if isinstance(error, ComfyApiError) else type(error).__name__
    message = error.message if isinstance(error, ComfyApiError) else str(error)
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, message))
