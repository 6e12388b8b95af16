"""The server's Prometheus metrics (`GET /metrics`), on a registry of its own (one per runtime, never the process-wide
default): jobs by front door and outcome and their durations (a job-service listener), and at each scrape the jobs
queued and running, ComfyUI's starts and readiness phase, webhook deliveries and the model cache.

    comfyui_api_jobs_total{source, outcome}                 counter: completed | failed | cancelled | timeout
    comfyui_api_job_duration_seconds{source, stage}        histogram: queue_wait | execution | total
    comfyui_api_jobs_live{state}                            gauge: queued | running (now)
    comfyui_api_comfyui_starts_total                        ComfyUI started (1 + restarts)
    comfyui_api_ready{phase}                                1 for the current readiness phase
    comfyui_api_webhooks_total{state}                       job webhooks by state, over the records kept
    comfyui_api_model_cache_bytes, comfyui_api_model_cache_entries
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from comfyui_api.jobs.store import JobRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class ServerMetrics:
    """`job_ended(record)` is a job-service listener; `render()` is the /metrics body."""

    def __init__(
        self,
        *,
        phase: Callable[[], str],
        live_states: Callable[[], Mapping[str, int]],
        comfy_starts: Callable[[], int],
        webhook_states: Callable[[], Mapping[str, int]],
        model_cache: Callable[[], Mapping[str, int]] | None = None,
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        self._jobs = CounterMetric(
            "comfyui_api_jobs",
            "Jobs that ended, by front door and outcome",
            ("source", "outcome"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "comfyui_api_job_duration_seconds",
            "Job durations by front door and stage (queue_wait, execution, total)",
            ("source", "stage"),
            buckets=_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(phase, live_states, comfy_starts, webhook_states, model_cache))

    def job_ended(self, record: JobRecord) -> None:
        source = record.request.source
        self._jobs.labels(source, _outcome(record)).inc()
        result = record.result
        if result is not None:
            stats = result.stats
            self._durations.labels(source, "queue_wait").observe(stats.queue_wait_ms / 1000)
            if stats.execution_ms is not None:
                self._durations.labels(source, "execution").observe(stats.execution_ms / 1000)
            self._durations.labels(source, "total").observe(stats.total_ms / 1000)
        elif record.finished_at is not None:
            self._durations.labels(source, "total").observe(max(0.0, record.finished_at - record.created_at))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _outcome(record: JobRecord) -> str:
    if record.status == "failed" and record.error is not None and record.error.kind == "timeout":
        return "timeout"
    return record.status


class _StateCollector(Collector):
    def __init__(
        self,
        phase: Callable[[], str],
        live_states: Callable[[], Mapping[str, int]],
        comfy_starts: Callable[[], int],
        webhook_states: Callable[[], Mapping[str, int]],
        model_cache: Callable[[], Mapping[str, int]] | None,
    ):
        self._phase = phase
        self._live = live_states
        self._starts = comfy_starts
        self._webhooks = webhook_states
        self._cache = model_cache

    def collect(self) -> Iterator[Metric]:
        live = GaugeMetricFamily("comfyui_api_jobs_live", "Jobs admitted and not ended, by state", labels=["state"])
        counts = self._live()
        for state in ("queued", "running"):
            live.add_metric([state], counts.get(state, 0))
        yield live
        yield CounterMetricFamily(
            "comfyui_api_comfyui_starts", "Times ComfyUI started (1 + restarts)", value=self._starts()
        )
        ready = GaugeMetricFamily("comfyui_api_ready", "1 for the current readiness phase", labels=["phase"])
        ready.add_metric([self._phase()], 1)
        yield ready
        hooks = GaugeMetricFamily("comfyui_api_webhooks", "Job webhooks by state (records kept)", labels=["state"])
        for state, count in sorted(self._webhooks().items()):
            hooks.add_metric([state], count)
        yield hooks
        if self._cache is not None:
            usage = self._cache()
            yield GaugeMetricFamily(
                "comfyui_api_model_cache_bytes", "Model cache size", value=usage.get("size_bytes", 0)
            )
            yield GaugeMetricFamily(
                "comfyui_api_model_cache_entries", "Models in the cache", value=usage.get("entries", 0)
            )

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected at scrape time only
