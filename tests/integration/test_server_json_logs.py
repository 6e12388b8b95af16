"""LOG_FORMAT=json: every line the server writes is one JSON object (uvicorn's and ComfyUI's own lines included),
and the lines about a job carry its id."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.integration.server import image_graph, load_image_graph, start_server

pytestmark = [pytest.mark.slow, pytest.mark.simulator_only]


def test_json_logs_parse_line_by_line_and_carry_the_job_id(tmp_path: Path) -> None:
    server = start_server(tmp_path, env={"LOG_FORMAT": "json", "LOG_LEVEL": "debug"})
    try:
        assert httpx.post(
            server.url("/prompt"), json={"prompt": image_graph(), "id": "logged-job"}, timeout=60
        ).is_success
        failed = httpx.post(
            server.url("/prompt"), json={"prompt": load_image_graph("bm90IGFuIGltYWdl"), "id": "bad-job"}
        )
        assert failed.status_code == 400
    finally:
        server.stop()
    lines = [line for line in server.logs().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line: a ValueError here names the one that is not JSON
    assert all({"time", "level", "logger", "message"} <= set(record) for record in records)
    assert {record.get("job_id") for record in records} >= {"logged-job", "bad-job"}
    assert any(record["message"].startswith("[comfyui]") for record in records)  # ComfyUI's own output
    assert any(record["logger"].startswith("uvicorn") for record in records)
