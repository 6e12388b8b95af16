"""GET /metrics: the server's metrics in Prometheus' text format (see `comfyui_api/metrics.py`). Behind API keys
like every route but the probes: give the scraper `authorization: Bearer <key>`."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State

from comfyui_api.errors import ComfyUnavailable
from comfyui_api.metrics import CONTENT_TYPE, ServerMetrics

METRICS_STATE_KEY = "metrics"


class MetricsController(Controller):
    tags = ["health"]

    @get("/metrics", summary="Prometheus metrics", media_type=CONTENT_TYPE, sync_to_thread=False)
    def metrics(self, state: State) -> Response[bytes]:
        metrics = state.get(METRICS_STATE_KEY)
        if not isinstance(metrics, ServerMetrics):
            raise ComfyUnavailable("metrics are not available: the server is not running")
        return Response(metrics.render(), media_type=CONTENT_TYPE)
