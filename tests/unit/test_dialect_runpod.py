"""RunPod's dialect without a server: the job input's every bad field in one answer, the bucket settings, states."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfyui_api.dialects.runpod import RunpodInputError, parse_input, runpod_state
from comfyui_api.errors import JobCancelled, JobTimeout
from comfyui_api.jobs.model import JobStatus
from comfyui_api.settings import SettingsError, load_settings

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {}}}


def test_an_input_may_arrive_as_a_json_string() -> None:
    parsed = parse_input(json.dumps({"workflow": GRAPH, "images": [{"name": "a.png", "image": "https://x/a.png"}]}))
    assert parsed.workflow == GRAPH
    assert [(item.name, item.field, item.media_only) for item in parsed.named_inputs] == [
        ("a.png", "images[0].image", True)
    ]


def test_every_bad_field_is_listed() -> None:
    with pytest.raises(RunpodInputError) as refused:
        parse_input(
            {
                "workflow": GRAPH,
                "images": [{"name": "a.png", "image": 3}, "x"],
                "files": {"f.txt": ""},
                "return_base64": "yes",
                "path": "../up",
                "extra": 1,
            }
        )
    fields = [line.split(":", 1)[0] for line in refused.value.details]
    assert fields == ["extra", "images[0].image", "images[1]", "files.f.txt", "return_base64", "path"]
    assert refused.value.body()["error"] == "invalid job input"


def test_a_ui_format_workflow_is_refused_with_the_way_out() -> None:
    with pytest.raises(RunpodInputError, match=r"Export \(API\)"):
        parse_input({"workflow": {"nodes": [], "links": [], "version": 0.4}})


def test_the_same_name_twice_is_refused() -> None:
    with pytest.raises(RunpodInputError, match="more than once"):
        parse_input({"workflow": GRAPH, "images": [{"name": "a.png", "image": "x" * 80}], "files": {"a.png": "eA=="}})


def test_states_follow_runpods_names() -> None:
    assert runpod_state(JobStatus.QUEUED) == "IN_QUEUE"
    assert runpod_state(JobStatus.RUNNING) == "IN_PROGRESS"
    assert runpod_state(JobStatus.FAILED, JobTimeout("late")) == "TIMED_OUT"
    assert runpod_state(JobStatus.FAILED, JobCancelled("stop")) == "CANCELLED"
    assert runpod_state(JobStatus.COMPLETED) == "COMPLETED"


@pytest.mark.parametrize(
    ("env", "endpoint", "bucket"),
    [
        (
            {"BUCKET_ENDPOINT_URL": "https://pics.s3.us-east-1.amazonaws.com"},
            "https://s3.us-east-1.amazonaws.com",
            "pics",
        ),
        ({"BUCKET_ENDPOINT_URL": "http://127.0.0.1:9000/pics"}, "http://127.0.0.1:9000", "pics"),
        (
            {"BUCKET_ENDPOINT_URL": "https://acct.r2.example.com", "BUCKET_NAME": "b"},
            "https://acct.r2.example.com",
            "b",
        ),
    ],
)
def test_the_bucket_is_read_from_the_endpoint_or_its_name(env: dict[str, str], endpoint: str, bucket: str) -> None:
    keys = {"BUCKET_ACCESS_KEY_ID": "key-id-4471", "BUCKET_SECRET_ACCESS_KEY": "secret-9083"}
    settings = load_settings({**env, **keys}).runpod
    assert settings.bucket is not None
    assert (settings.bucket.endpoint_url, settings.bucket.bucket) == (endpoint, bucket)
    assert "secret-9083" not in repr(settings) and "key-id-4471" not in repr(settings)


def test_a_bucket_without_keys_or_with_a_broken_key_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="BUCKET_ACCESS_KEY_ID"):
        load_settings({"BUCKET_ENDPOINT_URL": "https://b.s3.amazonaws.com"})
    broken = tmp_path / "gc_hmac.json"
    broken.write_text("{}")
    with pytest.raises(SettingsError, match="aws_access_key_id"):
        load_settings({"RUNPOD_BUCKET_KEYS_FILE": str(broken)})
