"""Real storage servers on loopback for server-level storage tests (moto S3, Azurite, the HTTP file server, the
Hugging Face Hub stand-in), with per-provider helpers: put an input, name an upload target, read an object back.

    with storage_world(tmp) as world:
        server = start_server(tmp / "api", env=world.server_env())
        url = world.put_input("s3", "in.png", data)
        field, options = world.target("s3")
        world.read(uploaded_url, "s3")
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from azure.storage.blob import BlobServiceClient, ContentSettings

from tests.servers.object_stores import AzuriteServer, S3Server, azurite_blob, moto_s3
from tests.servers.processes import ServerProcess, serve_python_module

PROVIDERS = ("s3", "azure", "hf", "http")
UPLOAD_FIELDS = {"s3": "s3", "azure": "azure_blob_upload", "hf": "hf_upload", "http": "http_upload"}

# Secrets of this test world: each must never appear in a response, a webhook or a server log line.
S3_REQUEST_KEY_ID = "AKIAREQUESTKEY000001"
S3_REQUEST_SECRET = "s3-request-secret-7d1f0c9a2b"
HF_TOKEN = "hf_world_token_3c9e1a77d2"
FILE_TOKEN = "file-world-token-b81e5d"
SERVER_AWS_KEY_ID = "AKIASERVERDEFAULT001"
SERVER_AWS_SECRET = "server-default-aws-secret-55e1"
SECRETS = (S3_REQUEST_SECRET, HF_TOKEN, FILE_TOKEN, SERVER_AWS_SECRET)

HF_UPLOAD_REPO = "acme/outputs"
HF_INPUT_REPO = "acme/private-inputs"  # private: reads need HF_TOKEN


@dataclass
class StorageWorld:
    s3: S3Server
    azurite: AzuriteServer
    files: ServerProcess  # requires FILE_TOKEN as a bearer token
    files_root: Path
    hub: ServerProcess
    bucket: str = field(default_factory=lambda: f"out-{uuid.uuid4().hex[:10]}")
    container: str = field(default_factory=lambda: f"out-{uuid.uuid4().hex[:10]}")

    # ---- clients the tests use as administrators (never the server's) ----

    def s3_admin(self) -> Any:
        return self.s3.admin_client()

    def azure_admin(self) -> BlobServiceClient:
        return BlobServiceClient.from_connection_string(self.azurite.connection_string)

    def create_containers(self) -> None:
        self.s3_admin().create_bucket(Bucket=self.bucket)
        with self.azure_admin() as service:
            service.create_container(self.container)

    # ---- what the server under test is given ----

    def server_env(self) -> dict[str, str]:
        """Provider settings for the API server. No HF token: requests bring theirs as credentials."""
        return {
            "AWS_ENDPOINT_URL": self.s3.endpoint_url,
            "AWS_REGION": self.s3.region,
            "AWS_ACCESS_KEY_ID": SERVER_AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SERVER_AWS_SECRET,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
            "HF_ENDPOINT": self.hub.url,
        }

    def credentials(self) -> list[dict[str, Any]]:
        """Request credentials covering every provider of this world."""
        return [
            {
                "url_pattern": f"s3://{self.bucket}/**",
                "auth": {"type": "s3", "access_key_id": S3_REQUEST_KEY_ID, "secret_access_key": S3_REQUEST_SECRET},
            },
            {"url_pattern": f"{self.hub.url}/**", "auth": {"type": "bearer", "token": HF_TOKEN}},
            {"url_pattern": f"{self.files.url}/", "auth": {"type": "bearer", "token": FILE_TOKEN}},
        ]

    def target(self, provider: str, **extra: Any) -> tuple[str, dict[str, Any]]:
        """(request field, options) of an upload target that works."""
        options: dict[str, Any] = {
            "s3": {"bucket": self.bucket, "prefix": "renders/"},
            "azure": {"container": self.container, "blob_prefix": "renders/"},
            "hf": {"repo": HF_UPLOAD_REPO, "directory": "renders"},
            "http": {"url_prefix": f"{self.files.url}/files/renders"},
        }[provider]
        return UPLOAD_FIELDS[provider], {**options, **extra}

    def broken_target(self, provider: str) -> tuple[str, dict[str, Any]]:
        """(request field, options) of a target whose uploads fail (missing bucket/container/repo, no auth)."""
        options: dict[str, Any] = {
            "s3": {"bucket": "no-such-bucket-here"},
            "azure": {"container": "no-such-container"},
            "hf": {"repo": "acme/no-such-repo"},
            "http": {"url_prefix": f"{self.files.url}/status/500"},
        }[provider]
        return UPLOAD_FIELDS[provider], options

    def expected_url(self, provider: str, key: str) -> str:
        """The URL an upload under `key` is reported with."""
        return {
            "s3": f"s3://{self.bucket}/{key}",
            "azure": f"{self.azurite.blob_endpoint}/{self.container}/{key}",
            "hf": f"{self.hub.url}/{HF_UPLOAD_REPO}/resolve/main/{key}",
            "http": f"{self.files.url}/files/{key}",
        }[provider]

    # ---- inputs and read-back ----

    def put_input(self, provider: str, name: str, data: bytes) -> str:
        """Store `data` where `provider` serves it and return the URL a request names it by."""
        if provider == "s3":
            self.s3_admin().put_object(Bucket=self.bucket, Key=f"inputs/{name}", Body=data)
            return f"s3://{self.bucket}/inputs/{name}"
        if provider == "azure":
            with self.azure_admin() as service:
                blob = service.get_blob_client(self.container, f"inputs/{name}")
                blob.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type="image/png"))
                return str(blob.url)
        if provider == "hf":
            return f"{self.hub.url}/{HF_INPUT_REPO}/resolve/main/{name}"  # seeded at start (see storage_world)
        path = self.files_root / "inputs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return f"{self.files.url}/files/inputs/{name}"

    def read(self, url: str) -> bytes:
        """The bytes behind an uploaded URL, read as an administrator."""
        if url.startswith("s3://"):
            parts = urlsplit(url)
            answer = self.s3_admin().get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
            return bytes(answer["Body"].read())
        if url.startswith(self.azurite.blob_endpoint + "/"):
            container, _, blob = url.removeprefix(self.azurite.blob_endpoint + "/").partition("/")
            with self.azure_admin() as service:
                return bytes(service.get_blob_client(container, blob).download_blob().readall())
        headers = {}
        if url.startswith(self.hub.url):
            headers["Authorization"] = f"Bearer {HF_TOKEN}"
        elif url.startswith(self.files.url):
            headers["Authorization"] = f"Bearer {FILE_TOKEN}"
        response = httpx.get(url, headers=headers, follow_redirects=True, timeout=30)
        response.raise_for_status()
        return response.content

    def exists(self, url: str) -> bool:
        try:
            self.read(url)
        except Exception:
            return False
        return True


def _hub_args(seed: Path, blobs: Path, inputs: dict[str, bytes]) -> list[str]:
    for name, data in inputs.items():
        path = seed / "models" / HF_INPUT_REPO / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return [
        "--seed", str(seed), "--blob-dir", str(blobs), "--token", HF_TOKEN,
        "--repo", f"model:{HF_UPLOAD_REPO}", "--private", f"model:{HF_INPUT_REPO}",
    ]  # fmt: skip


@contextlib.contextmanager
def storage_world(root: Path, *, hf_inputs: dict[str, bytes] | None = None) -> Iterator[StorageWorld]:
    """Start every storage server under `root`; `hf_inputs` are seeded into the private HF input repo."""
    logs = root / "logs"
    files_root = root / "files"
    for folder in (logs, files_root, root / "hf-seed", root / "hf-blobs", root / "azurite"):
        folder.mkdir(parents=True, exist_ok=True)
    hub_args = _hub_args(root / "hf-seed", root / "hf-blobs", hf_inputs or {})
    file_args = ["--root", str(files_root), "--bearer", FILE_TOKEN]
    with (
        moto_s3(log_dir=logs) as s3,
        azurite_blob(workdir=root / "azurite") as azurite,
        serve_python_module("tests.servers.file_server", file_args, log_dir=logs) as files,
        serve_python_module("tests.servers.hf_hub", hub_args, log_dir=logs) as hub,
    ):
        world = StorageWorld(s3=s3, azurite=azurite, files=files, files_root=files_root, hub=hub)
        world.create_containers()
        yield world
