"""A 200 MB upload to S3 (multipart) and to HTTP (streamed PUT) must not grow the uploading process's resident
memory by 64 MB or more. Measured in a fresh subprocess (tests/component/storage/upload_rss_probe.py) so the test
runner's own memory does not blur the figure."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.component.storage.conftest import FileServers
from tests.servers.object_stores import S3Server
from tests.servers.processes import REPO_ROOT

SIZE_BYTES = 200 * 1024 * 1024
LIMIT_BYTES = 64 * 1024 * 1024

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("aws_env")]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.mp4"
    digest = hashlib.sha256()
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as handle:
        for index in range(SIZE_BYTES // len(block)):
            chunk = index.to_bytes(8, "big") + block[8:]  # every MiB different, so misplaced parts are caught
            digest.update(chunk)
            handle.write(chunk)
    return path, digest.hexdigest()


def run_probe(*args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "tests.component.storage.upload_rss_probe", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def report(label: str, result: dict[str, Any]) -> str:
    return (
        f"{label}: peak RSS growth {result['growth_bytes'] / 2**20:.1f} MiB for a {SIZE_BYTES / 2**20:.0f} MiB upload "
        f"(RSS before {result['rss_before_bytes'] / 2**20:.1f} MiB, {result['seconds']} s)"
    )


def test_200_mb_multipart_upload_to_s3_stays_under_64_mb(s3_server: S3Server, big_file: tuple[Path, str]) -> None:
    path, sha256 = big_file
    bucket = f"mem-{uuid.uuid4().hex[:12]}"
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket=bucket)

    result = run_probe(
        "--provider", "s3", "--endpoint", s3_server.endpoint_url, "--bucket", bucket, "--file", str(path)
    )

    print(report("S3 multipart", result))
    assert result["url"] == f"s3://{bucket}/probe/big.mp4"
    stored = admin.get_object(Bucket=bucket, Key="probe/big.mp4")
    digest = hashlib.sha256()
    for chunk in stored["Body"].iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
    assert stored["ContentLength"] == SIZE_BYTES and digest.hexdigest() == sha256
    assert "-" in stored["ETag"]  # multipart
    assert result["growth_bytes"] < LIMIT_BYTES, report("S3 multipart", result)


def test_200_mb_streamed_put_stays_under_64_mb(file_servers: FileServers, big_file: tuple[Path, str]) -> None:
    path, sha256 = big_file
    prefix = f"{file_servers.open.url}/files/mem-{uuid.uuid4().hex[:8]}"

    result = run_probe("--provider", "http", "--url-prefix", prefix, "--file", str(path))

    print(report("HTTP PUT", result))
    stored = file_servers.root / prefix.rsplit("/", 1)[1] / "probe/big.mp4"
    digest = hashlib.sha256()
    with open(stored, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    assert stored.stat().st_size == SIZE_BYTES and digest.hexdigest() == sha256
    assert result["growth_bytes"] < LIMIT_BYTES, report("HTTP PUT", result)
