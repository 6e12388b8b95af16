"""Real storage servers on loopback, started once per session: moto (S3), Azurite (Azure Blob), the HTTP file
server and the Hugging Face Hub stand-in. Each test builds its own providers against them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.component.storage.storage_support import FILE_SERVER_TOKEN, HF_TOKEN, SEEDED_HF_FILES
from tests.servers.object_stores import AzuriteServer, S3Server, azurite_blob, moto_s3
from tests.servers.processes import ServerProcess, serve_python_module


@dataclass(frozen=True)
class HubServer:
    endpoint: str
    token: str
    process: ServerProcess


@dataclass(frozen=True)
class FileServers:
    open: ServerProcess  # no auth
    bearer: ServerProcess  # requires FILE_SERVER_TOKEN as a bearer token
    root: Path


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def s3_server(server_logs: Path) -> Iterator[S3Server]:
    with moto_s3(log_dir=server_logs) as server:
        yield server


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    with azurite_blob(workdir=tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def file_servers(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[FileServers]:
    root = tmp_path_factory.mktemp("file-server-root")
    with (
        serve_python_module("tests.servers.file_server", ["--root", str(root)], log_dir=server_logs) as plain,
        serve_python_module(
            "tests.servers.file_server", ["--root", str(root), "--bearer", FILE_SERVER_TOKEN], log_dir=server_logs
        ) as bearer,
    ):
        yield FileServers(open=plain, bearer=bearer, root=root)


@pytest.fixture(scope="session")
def hf_hub(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[HubServer]:
    seed = tmp_path_factory.mktemp("hf-seed")
    for relative, data in SEEDED_HF_FILES.items():
        (seed / relative).parent.mkdir(parents=True, exist_ok=True)
        (seed / relative).write_bytes(data)
    args = [
        "--seed",
        str(seed),
        "--blob-dir",
        str(tmp_path_factory.mktemp("hf-blobs")),
        "--token",
        HF_TOKEN,
        "--repo",
        "model:acme/uploads",
        "--repo",
        "dataset:acme/upload-data",
        "--private",
        "model:acme/private-model",
    ]
    with serve_python_module("tests.servers.hf_hub", args, log_dir=server_logs) as process:
        yield HubServer(endpoint=process.url, token=HF_TOKEN, process=process)


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for botocore's default chain, and no host AWS config leaking in."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-default-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-default-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert os.environ["AWS_ACCESS_KEY_ID"]
