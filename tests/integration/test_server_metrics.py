"""GET /metrics after jobs of every outcome: the counters, histograms and gauges move as they should, in
Prometheus' text format (parsed with prometheus-client's own parser)."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.server import ServerProcess, image_graph, load_image_graph, running_server, sampler_graph

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("metrics"))


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(server.url("/metrics"), timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_follow_jobs_of_every_outcome(server: ServerProcess) -> None:
    before = scrape(server)
    assert value(before, "comfyui_api_ready", phase="ready") == 1
    assert value(before, "comfyui_api_comfyui_starts_total") == 1
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        assert http.post("/prompt", json={"prompt": image_graph()}).status_code == 200
        not_an_image = base64.b64encode(b"definitely not an image").decode()
        assert http.post("/prompt", json={"prompt": load_image_graph(not_an_image)}).status_code == 400
        assert http.post("/prompt", json={"prompt": sampler_graph(2000), "timeout_s": 1}).status_code == 504
        queued = http.post("/prompt", json={"prompt": sampler_graph(2000, seed=3), "async": True}).json()["id"]
        during = scrape(server)
        live = sum(value(during, "comfyui_api_jobs_live", state=state) for state in ("queued", "running"))
        assert live >= 1  # this one (the timed-out one may still be leaving ComfyUI)
        assert http.post(f"/jobs/{queued}/cancel").json()["cancelled"] is True
        http.get(f"/jobs/{queued}/events", timeout=30)  # to its end
    # A job is counted when its record ends: a timed-out one only once ComfyUI has let its prompt go.
    outcomes = ("completed", "failed", "timeout", "cancelled")

    def grown(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], outcome: str) -> float:
        name = "comfyui_api_jobs_total"
        return value(samples, name, source="http", outcome=outcome) - value(
            before, name, source="http", outcome=outcome
        )

    deadline = time.monotonic() + 30
    after = scrape(server)
    while any(grown(after, outcome) < 1 for outcome in outcomes) and time.monotonic() < deadline:
        time.sleep(0.2)
        after = scrape(server)
    assert {outcome: grown(after, outcome) for outcome in outcomes} == dict.fromkeys(outcomes, 1)
    total = "comfyui_api_job_duration_seconds_count"
    assert value(after, total, source="http", stage="total") - value(before, total, source="http", stage="total") == 4
    assert value(after, total, source="http", stage="queue_wait") >= 1  # the completed job's stages
    assert value(after, "comfyui_api_jobs_live", state="running") == 0
