"""RunPod's serverless job API on the normal server, driven by the runpod SDK's own client (`runpod.Endpoint`, its
API base pointed at this server, its key an API key of ours): run_sync, run + status + output, cancel; and the
error shape of a bad input."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import runpod

from tests.integration.server import ServerProcess, image_graph, running_server, sampler_graph, wait_until
from tests.servers.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.simulator_only

API_KEY = "runpod-client-key-3301"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("runpod-api"), env={"API_KEYS": API_KEY})


@pytest.fixture
def endpoint(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> runpod.Endpoint:
    monkeypatch.setattr(runpod, "api_key", API_KEY)
    monkeypatch.setattr(runpod, "endpoint_url_base", server.url("/v2"))  # never RunPod's own API
    return runpod.Endpoint("any-endpoint-id")


def test_run_sync_returns_the_workers_output(endpoint: runpod.Endpoint) -> None:
    output = endpoint.run_sync({"workflow": image_graph()}, timeout=60)
    assert [image["type"] for image in output["images"]] == ["base64"]
    assert output["outputs"][0]["kind"] == "image"


def test_run_then_status_then_output(endpoint: runpod.Endpoint, server: ServerProcess) -> None:
    job = endpoint.run({"workflow": sampler_graph(40)})
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    output = job.output(timeout=60)
    assert len(output["images"]) == 1
    status = httpx.get(server.url(f"/v2/x/status/{job.job_id}"), headers={"authorization": f"Bearer {API_KEY}"}).json()
    assert status["status"] == "COMPLETED" and status["executionTime"] > 0 and status["delayTime"] >= 0


def test_cancel_stops_a_running_job(endpoint: runpod.Endpoint) -> None:
    job = endpoint.run({"workflow": sampler_graph(5000)})
    deadline = time.monotonic() + 30
    while job.status() != "IN_PROGRESS":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job.cancel(timeout=10)["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"


def test_a_bad_input_is_a_400_listing_every_bad_field(server: ServerProcess) -> None:
    body = {"input": {"workflow": {"nodes": [], "links": []}, "images": [{"name": "a.png"}]}}
    answer = httpx.post(server.url("/v2/x/run"), json=body, headers={"authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["field"] == "input"
    assert any("Export (API)" in line for line in error["details"]["details"])
    assert any(line.startswith("images[0].image") for line in error["details"]["details"])


def test_without_the_key_the_sdk_is_refused(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runpod, "api_key", "wrong-key")
    monkeypatch.setattr(runpod, "endpoint_url_base", server.url("/v2"))
    with pytest.raises(RuntimeError, match=r"(?i)unauthorized"):
        runpod.Endpoint("any").run_sync({"workflow": image_graph()}, timeout=30)


async def test_a_webhook_in_the_body_gets_the_status_of_the_ended_job(server: ServerProcess) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with WebhookReceiver() as receiver, httpx.AsyncClient(timeout=30, headers=headers) as http:
        answer = await http.post(
            server.url("/v2/any/run"), json={"input": {"workflow": image_graph()}, "webhook": receiver.url("/done")}
        )
        assert answer.status_code == 200, answer.text
        job_id = answer.json()["id"]
        [hook] = await receiver.wait_for(1, path="/done", timeout_s=60)
        body = hook.json()
        assert (body["id"], body["status"]) == (job_id, "COMPLETED")
        assert [image["type"] for image in body["output"]["images"]] == ["base64"]
        assert body["executionTime"] >= 0 and "delayTime" in body

        async def delivered() -> bool:  # noted on the record once the receiver's answer is in
            return (await http.get(server.url(f"/jobs/{job_id}"))).json()["webhook"]["state"] == "delivered"

        await wait_until(delivered, timeout_s=10)

        for bad in ("ftp://example.com/x", 7):
            refused = await http.post(
                server.url("/v2/any/run"), json={"input": {"workflow": image_graph()}, "webhook": bad}
            )
            assert refused.status_code == 400 and refused.json()["error"]["field"] == "webhook", refused.text
