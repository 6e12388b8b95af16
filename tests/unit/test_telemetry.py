"""The tracing switch: off without an endpoint, off (with a warning naming the extra) when OpenTelemetry is not
installed, and the OTLP headers setting parsed or refused naming the variable."""

from __future__ import annotations

import logging
import sys

import pytest

from comfyui_api.jobs.model import JobRequest
from comfyui_api.jobs.tracing import NO_TRACER, Stages
from comfyui_api.settings import SettingsError, TracingSettings, load_settings
from comfyui_api.telemetry import OtelJobTracer, job_tracer


def test_no_endpoint_no_tracer() -> None:
    tracer, otel = job_tracer(TracingSettings())
    assert tracer is NO_TRACER and otel is None


def test_a_missing_extra_is_a_warning_not_a_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # as if the otel extra were not installed
    with caplog.at_level(logging.WARNING, logger="comfyui_api.telemetry"):
        tracer, otel = job_tracer(TracingSettings(otlp_endpoint="http://127.0.0.1:4318"))
    assert tracer is NO_TRACER and otel is None
    assert "comfyui-api[otel]" in caplog.text


def test_headers_and_service_name_are_read() -> None:
    settings = load_settings(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-key=a%3Db, other = 2",
            "OTEL_SERVICE_NAME": "gpu-7",
        }
    ).tracing
    assert settings.otlp_endpoint == "http://collector:4318" and settings.service_name == "gpu-7"
    assert settings.otlp_headers == (("x-key", "a=b"), ("other", "2"))
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_HEADERS"):
        load_settings({"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"})
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        load_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"})


def test_a_stage_left_by_an_exception_is_marked_failed_and_the_spans_nest() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    tracer = OtelJobTracer(TracingSettings(service_name="unit"), exporter=memory)
    trace = tracer.start_job(JobRequest(id="j1", graph={}, timeout_s=1.0))
    with pytest.raises(RuntimeError), Stages(trace) as stages:
        stages.enter("stage_inputs")
        stages.enter("queue")
        raise RuntimeError("ComfyUI went away")
    trace.end("failed", RuntimeError("ComfyUI went away"))
    tracer.shutdown()  # sends what the batch processor still holds
    spans = {span.name: span for span in memory.get_finished_spans()}
    assert set(spans) == {"stage_inputs", "queue", "job"}
    assert (
        spans["queue"].status.status_code.name == "ERROR" and spans["stage_inputs"].status.status_code.name == "UNSET"
    )
    assert spans["queue"].parent is not None and spans["queue"].parent.span_id == spans["job"].context.span_id
    assert dict(spans["job"].attributes or {})["error.type"] == "RuntimeError"
    assert spans["job"].resource.attributes["service.name"] == "unit"
