"""Shared constants and small factories for the storage tests (the servers themselves live in tests/servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.jobs.model import OutputFile

HF_TOKEN = "hf_test_token_5f2b9c1d7e"
FILE_SERVER_TOKEN = "file-server-token-8c1e4a"
SEEDED_HF_FILES = {
    "models/acme/tiny-model/config.json": b'{"hidden_size": 8}',
    "models/acme/tiny-model/weights/model.safetensors": bytes(range(256)) * 8192,  # 2 MiB: served as LFS
    "datasets/acme/tiny-data/data/train.csv": b"a,b\n1,2\n",
    "models/acme/private-model/secret.txt": b"private bytes",
}


def write_file(directory: Path, name: str, data: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(data)
    return path


def make_output(path: Path, *, kind: str = "image", content_type: str = "") -> OutputFile:
    return OutputFile(
        node_id="9",
        kind=kind,
        filename=path.name,
        subfolder="",
        comfy_type="output",
        content_type=content_type,
        size_bytes=path.stat().st_size,
        path=path,
    )


def assert_no_secret(secrets: list[str], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"a secret leaked into: {text[:300]!r}"


def all_log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name}: {r.getMessage()}" for r in caplog.records)


def listing(directory: Path) -> list[str]:
    """Names in `directory` (hidden part files included); [] when it does not exist."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []
