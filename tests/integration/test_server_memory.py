"""A big output is streamed from disk: the server's peak RSS grows by well under twice the output's size."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.server import ServerProcess, image_graph, running_server, sampler_graph
from tests.rss import peak_rss_bytes

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc"),
    pytest.mark.simulator_only(reason="a 2048x2048 KSampler output: instant on the simulator, far too slow on a CPU"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("memory"))


def test_twelve_megabyte_output_costs_less_than_twice_its_size(server: ServerProcess) -> None:
    assert server.proc is not None
    warm_up = httpx.post(server.url("/prompt"), json={"prompt": image_graph()}, timeout=60)
    assert warm_up.status_code == 200
    before = peak_rss_bytes(server.proc.pid)
    response = httpx.post(server.url("/prompt"), json={"prompt": sampler_graph(1, size=2048)}, timeout=120)
    assert response.status_code == 200, response.text[:500]
    size_bytes = response.json()["outputs"][0]["size_bytes"]
    assert size_bytes > 10 * 1024 * 1024  # 2048x2048 coloured noise does not compress
    assert len(base64.b64decode(response.json()["images"][0])) == size_bytes
    growth = peak_rss_bytes(server.proc.pid) - before
    assert growth < 2 * size_bytes, f"peak RSS grew by {growth} bytes for a {size_bytes}-byte output"
