"""Real object-store servers on loopback for tests: moto's S3 server and Azurite's blob service.

    with moto_s3(log_dir=tmp) as s3: ...      # s3.endpoint_url; any access key works
    with azurite_blob(workdir=tmp) as blob: ...  # blob.connection_string for the well-known dev account

Azurite comes from npm: `npm install --prefix .ci --no-audit --no-fund` (or point AZURITE_BIN at its binary). When it
is missing, `azurite_blob` raises with those instructions; tests never skip silently.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from tests.servers.processes import REPO_ROOT, free_port, serve_on_port

# Azurite's documented development account (public, for the emulator only).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_INSTALL_HINT = (
    "Azurite is not installed. Install it with `npm install --prefix .ci --no-audit --no-fund` "
    "(from the repository root; needs Node.js >= 18), or set AZURITE_BIN to an azurite or azurite-blob binary."
)


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    region: str = "us-east-1"

    def admin_client(self) -> Any:
        """A blocking boto3 client for seeding and reading buckets in tests (moto accepts any key; never the server's
        credentials)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id="admin",
            aws_secret_access_key="admin-secret",
        )


@dataclass(frozen=True)
class AzuriteServer:
    blob_endpoint: str
    account: str = AZURITE_ACCOUNT
    key: str = AZURITE_KEY

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={self.key};"
            f"BlobEndpoint={self.blob_endpoint};"
        )


@contextlib.contextmanager
def moto_s3(*, log_dir: Path, attempts: int = 3) -> Iterator[S3Server]:
    """moto's S3 server in a subprocess. A port taken between choosing and binding it is retried."""
    moto_bin = Path(sys.executable).with_name("moto_server")
    argv_base = [str(moto_bin)] if moto_bin.exists() else [sys.executable, "-m", "moto.server"]
    for attempt in range(attempts):
        port = free_port()
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(
                serve_on_port(
                    [*argv_base, "-H", "127.0.0.1", "-p", str(port)],
                    port=port,
                    log_path=log_dir / f"moto-{port}.log",
                )
            )
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        with stack:
            yield S3Server(endpoint_url=f"http://127.0.0.1:{port}")
        return


def azurite_binary() -> Path:
    """The azurite-blob binary: AZURITE_BIN, else .ci/node_modules/.bin. Raises with install instructions."""
    configured = os.environ.get("AZURITE_BIN", "").strip()
    candidates = []
    if configured:
        path = Path(configured)
        candidates += [path.with_name("azurite-blob"), path] if path.name == "azurite" else [path]
    candidates.append(REPO_ROOT / ".ci" / "node_modules" / ".bin" / "azurite-blob")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    if shutil.which("node") is None:
        raise RuntimeError(AZURITE_INSTALL_HINT + " Node.js itself was not found on PATH.")
    raise RuntimeError(AZURITE_INSTALL_HINT)


@contextlib.contextmanager
def azurite_blob(*, workdir: Path, attempts: int = 3) -> Iterator[AzuriteServer]:
    """Azurite's blob service in a subprocess, storing under `workdir`."""
    binary = azurite_binary()
    for attempt in range(attempts):
        port = free_port()
        location = workdir / f"azurite-{port}"
        location.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(location),
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ]
        stack = contextlib.ExitStack()
        try:
            # Azurite drains open connections for seconds on SIGTERM; its data is throwaway, so do not wait long.
            log_path = workdir / f"azurite-{port}.log"
            stack.enter_context(serve_on_port(argv, port=port, log_path=log_path, stop_grace_s=1.0))
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            continue
        with stack:
            yield AzuriteServer(blob_endpoint=f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
        return
