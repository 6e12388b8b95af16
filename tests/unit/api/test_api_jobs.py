"""api/jobs.py, api/prompts.py and api/progress_stream.py over a scripted runner: the 202 echo, the job record, the
list, the event stream with ids and Last-Event-ID, cancel and redeliver answers, and their 4xx naming the field."""

from __future__ import annotations

import json

import pytest

from comfyui_api.api.jobs import output_url
from comfyui_api.api.progress_stream import last_event_id, wants_event_stream
from comfyui_api.api.prompts import job_path
from comfyui_api.dialects.salad_request import check_metadata
from comfyui_api.errors import InvalidRequest
from tests.unit.api.app_support import GRAPH, post_json


def frames(text: str) -> list[tuple[int, str, dict]]:
    found = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and not line.startswith(":"))
        if "event" in fields:
            found.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return found


async def test_async_answers_202_with_salads_echo_and_the_job_path(client, runner) -> None:
    body = {"prompt": GRAPH, "id": "a1", "async": True, "metadata": {"user": "u"}, "credentials": []}
    response = await post_json(client, body)
    assert response.status_code == 202
    answer = response.json()
    assert (answer["id"], answer["status"], answer["job"]) == ("a1", "ok", job_path("a1"))
    assert answer["prompt"] == GRAPH and answer["async"] is True and answer["metadata"] == {"user": "u"}
    assert "credentials" not in answer
    record = (await client.get("/jobs/a1")).json()
    assert record["status"] == "completed" and record["texts"] == ["done"] and record["metadata"] == {"user": "u"}
    assert runner.requests[0].metadata == {"user": "u"}


async def test_the_sync_answer_carries_the_metadata_and_the_record_stays(client) -> None:
    response = await post_json(client, {"prompt": GRAPH, "id": "s1", "metadata": {"n": 1}})
    assert response.status_code == 200 and response.json()["metadata"] == {"n": 1}
    listed = (await client.get("/jobs")).json()
    assert [job["id"] for job in listed["jobs"]] == ["s1"] and listed["next_cursor"] is None


def test_metadata_over_the_cap_is_a_400_naming_it() -> None:
    check_metadata({"small": 1})
    with pytest.raises(InvalidRequest) as refused:
        check_metadata({"blob": "x" * 20_000})
    assert refused.value.field == "metadata"


async def test_events_replay_with_ids_and_resume_after_last_event_id(client) -> None:
    await post_json(client, {"prompt": GRAPH, "id": "e1", "async": True})
    whole = frames((await client.get("/jobs/e1/events")).text)
    assert [name for _, name, _ in whole] == ["complete"] and whole[0][0] == 1
    assert whole[0][2]["id"] == "e1" and whole[0][2]["texts"] == ["done"]
    resumed = await client.get("/jobs/e1/events", headers={"Last-Event-ID": "1"})
    assert resumed.status_code == 200 and frames(resumed.text) == []
    bad = await client.get("/jobs/e1/events", headers={"Last-Event-ID": "-3"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "Last-Event-ID"


async def test_an_event_stream_answer_to_post_prompt(client) -> None:
    response = await client.post(
        "/prompt", json={"prompt": GRAPH, "id": "sse1"}, headers={"accept": "text/event-stream"}
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    assert [name for _, name, _ in frames(response.text)] == ["complete"]


async def test_a_failed_job_record_and_stream(client, runner) -> None:
    runner.error = InvalidRequest("no such thing", field="prompt.1.inputs.image")
    assert (await post_json(client, {"prompt": GRAPH, "id": "f1", "async": True})).status_code == 202
    record = (await client.get("/jobs/f1")).json()
    assert record["status"] == "failed"
    assert record["error"] == {"type": "invalid_request", "message": "no such thing", "field": "prompt.1.inputs.image"}
    [(_, name, data)] = frames((await client.get("/jobs/f1/events")).text)
    assert name == "failed" and data["error"]["field"] == "prompt.1.inputs.image"


async def test_unknown_jobs_bad_filters_cancel_and_redeliver(client) -> None:
    missing = await client.get("/jobs/nope")
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "id"
    assert (await client.get("/jobs/nope/events")).status_code == 404
    assert (await client.get("/jobs", params={"limit": 0})).json()["error"]["field"] == "limit"
    assert (await client.get("/jobs", params={"cursor": "zz"})).json()["error"]["field"] == "cursor"
    assert (await client.post("/jobs/nope/cancel")).json() == {"id": "nope", "cancelled": False}
    await post_json(client, {"prompt": GRAPH, "id": "done"})
    assert (await client.post("/jobs/done/cancel")).json() == {"id": "done", "cancelled": False}
    no_outputs = await client.get("/jobs/done/outputs/0")
    assert no_outputs.status_code == 404 and no_outputs.json()["error"]["field"] == "index"
    redeliver = await client.post("/jobs/done/redeliver")
    assert redeliver.status_code == 400 and redeliver.json()["error"]["field"] == "id"


def test_stream_helpers() -> None:
    assert wants_event_stream("application/json, text/event-stream;q=0.5")
    assert not wants_event_stream("text/event-stream;q=0")
    assert last_event_id(None) == 0 and last_event_id(" 7 ") == 7
    assert output_url("j", 2) == "/jobs/j/outputs/2"


async def test_health_and_ready(client) -> None:
    health = await client.get("/health")
    assert health.status_code == 200 and health.json()["comfyui_version"] == "0.33.0"
    assert (await client.get("/ready")).json()["phase"] == "ready"
