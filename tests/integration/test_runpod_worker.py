"""`comfyui-api runpod` as RunPod runs it, with the runpod SDK: `--test_input` runs one job and exits, the SDK's
local test API serves run + status, and a bucket (moto's S3 server) configured by env or by a gc_hmac.json key file
receives the outputs, with a failed upload falling back to base64. Every RunPod URL points at a loopback receiver
and the SDK's system checks are off, so nothing leaves the machine."""

from __future__ import annotations

import ast
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.server import REPO_ROOT, ServerProcess, decode_image, free_port, image_graph, make_server
from tests.servers.object_stores import S3Server, moto_s3
from tests.servers.webhook_receiver import WebhookReceiver

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]

BUCKET = "runpod-outputs"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_s3(log_dir=tmp_path_factory.mktemp("moto")) as server:
        server.admin_client().create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
async def runpod_stand_in() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


def worker_env(receiver: WebhookReceiver, **extra: str) -> dict[str, str]:
    """RunPod's own URLs all lead to the loopback receiver; the SDK's checks of the machine are off."""
    return {
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_WEBHOOK_GET_JOB": receiver.url("/job-take/$ID"),
        "RUNPOD_WEBHOOK_POST_OUTPUT": receiver.url("/job-done/$ID?gpu=test"),
        "RUNPOD_WEBHOOK_POST_STREAM": receiver.url("/job-stream/$ID?gpu=test"),
        "RUNPOD_WEBHOOK_PING": receiver.url("/ping"),
        **extra,
    }


def bucket_env(s3: S3Server, bucket: str = BUCKET) -> dict[str, str]:
    return {
        "BUCKET_ENDPOINT_URL": s3.endpoint_url,
        "BUCKET_NAME": bucket,
        "BUCKET_ACCESS_KEY_ID": "runpod-key",
        "BUCKET_SECRET_ACCESS_KEY": "runpod-secret",
        "AWS_REGION": s3.region,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_test_input(root: Path, env: dict[str, str], job_input: dict[str, Any]) -> tuple[int, str]:
    server = make_server(root, env=env)
    argv = [sys.executable, "-m", "comfyui_api", "runpod", "--test_input", json.dumps({"input": job_input})]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=server.env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def job_result(log: str) -> dict[str, Any]:
    """The SDK prints `Job result: {...}` (a Python repr) after a --test_input run."""
    line = next(line for line in log.splitlines() if "Job result: " in line)
    result: dict[str, Any] = ast.literal_eval(line.split("Job result: ", 1)[1])
    return result


def test_help_lists_the_sdks_flags_without_starting_anything(tmp_path: Path) -> None:
    server = make_server(tmp_path, env={"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true"})
    argv = [sys.executable, "-m", "comfyui_api", "runpod", "--help"]
    done = subprocess.run(argv, cwd=REPO_ROOT, env=server.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--test_input" in done.stdout and "--rp_serve_api" in done.stdout
    said = done.stdout + done.stderr
    assert "storage provider" not in said and "Traceback" not in said, "no runtime was built for a help text"
    assert not any(tmp_path.rglob("*.log")), "no ComfyUI was launched"


async def test_test_input_uploads_to_the_bucket_under_rp_and_the_path(
    tmp_path: Path, s3: S3Server, runpod_stand_in: WebhookReceiver
) -> None:
    env = worker_env(runpod_stand_in, **bucket_env(s3))
    code, log = await asyncio.to_thread(run_test_input, tmp_path, env, {"workflow": image_graph(), "path": "batch-7"})
    assert code == 0, log[-3000:]
    images = job_result(log)["output"]["images"]
    assert [image["type"] for image in images] == ["s3_url"]
    listed = s3.admin_client().list_objects_v2(Bucket=BUCKET, Prefix="rp/batch-7/")
    assert [item["Key"].rsplit("/", 1)[1] for item in listed.get("Contents", [])] == [images[0]["filename"]]
    assert "runpod-secret" not in log


async def test_a_failed_upload_falls_back_to_base64_with_an_error_line(
    tmp_path: Path, s3: S3Server, runpod_stand_in: WebhookReceiver
) -> None:
    keys = tmp_path / "gc_hmac.json"
    keys.write_text(
        json.dumps(
            {
                "endpoint_url": s3.endpoint_url,
                "bucket": "no-such-bucket",
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
            }
        )
    )
    env = worker_env(runpod_stand_in, RUNPOD_BUCKET_KEYS_FILE=str(keys), AWS_REGION=s3.region)
    code, log = await asyncio.to_thread(run_test_input, tmp_path / "run", env, {"workflow": image_graph()})
    assert code == 0, log[-3000:]
    output = job_result(log)["output"]
    assert [image["type"] for image in output["images"]] == ["base64"]
    assert len(output["errors"]) == 1 and output["images"][0]["filename"] in output["errors"][0]


async def test_a_bad_input_fails_the_test_run(tmp_path: Path, runpod_stand_in: WebhookReceiver) -> None:
    code, log = await asyncio.to_thread(
        run_test_input, tmp_path, worker_env(runpod_stand_in), {"workflow": {"nodes": [], "links": []}}
    )
    assert code == 1
    assert "invalid job input" in log


@pytest.fixture
def local_api(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    port = free_port()
    with_stand_in = {
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/job-take/$ID",
        "RUNPOD_WEBHOOK_POST_OUTPUT": "http://127.0.0.1:9/job-done/$ID?gpu=test",
    }
    server = make_server(tmp_path, env=with_stand_in)
    server.args = ("runpod", "--rp_serve_api", "--rp_api_port", str(port), "--rp_api_host", "127.0.0.1")
    server.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.proc is not None and server.proc.poll() is None, server.logs()[-3000:]
            try:
                if httpx.get(f"{base}/", timeout=2).status_code == 200:  # the SDK serves its docs at /
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, server.logs()[-3000:]
            time.sleep(0.2)
        yield server, base
    finally:
        server.stop()


def test_the_sdks_local_test_api_runs_a_job_with_run_and_status(local_api: tuple[ServerProcess, str]) -> None:
    _, base = local_api
    started = httpx.post(f"{base}/run", json={"input": {"workflow": image_graph()}}, timeout=30).json()
    status = httpx.post(f"{base}/status/{started['id']}", timeout=120).json()  # POST in the SDK
    assert status["status"] == "COMPLETED", status
    assert [image["type"] for image in status["output"]["images"]] == ["base64"]
    assert status["output"]["outputs"][0]["kind"] == "image"


async def test_the_images_test_input_runs_with_no_model(tmp_path: Path, runpod_stand_in: WebhookReceiver) -> None:
    """docker/runpod/test_input.json, the job the worker image runs in the SDK's local mode: a red image sent as a
    data URI comes back inverted, as base64."""
    shipped = json.loads((REPO_ROOT / "docker" / "runpod" / "test_input.json").read_text())
    code, log = await asyncio.to_thread(run_test_input, tmp_path, worker_env(runpod_stand_in), shipped["input"])
    assert code == 0, log[-3000:]
    images = job_result(log)["output"]["images"]
    assert [image["type"] for image in images] == ["base64"]
    assert decode_image(images[0]["data"]).getpixel((0, 0)) == (0, 255, 255)
