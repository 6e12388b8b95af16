"""Hugging Face provider against the Hub stand-in on loopback (tests/servers/hf_hub.py), reached through the real
huggingface_hub client: resolve downloads (regular and LFS-redirected), uploads through preupload + commit."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import httpx
import pytest

from comfyui_api.errors import InputStagingError, StorageError
from comfyui_api.storage.base import Credential
from comfyui_api.storage.hf import HuggingFaceProvider, parse_resolve_url
from tests.component.storage.conftest import HubServer
from tests.component.storage.storage_support import SEEDED_HF_FILES, all_log_text, assert_no_secret, listing, write_file
from tests.servers.processes import free_port


def provider_for(hub: HubServer, *, token: str | None = None) -> HuggingFaceProvider:
    return HuggingFaceProvider(endpoint=hub.endpoint, token=token, timeout_s=30)


@pytest.mark.parametrize(
    ("url_path", "seeded", "name"),
    [
        ("acme/tiny-model/resolve/main/config.json", "models/acme/tiny-model/config.json", "config.json"),
        (
            "acme/tiny-model/resolve/main/weights/model.safetensors",
            "models/acme/tiny-model/weights/model.safetensors",
            "model.safetensors",
        ),
        ("datasets/acme/tiny-data/resolve/main/data/train.csv", "datasets/acme/tiny-data/data/train.csv", "train.csv"),
    ],
)
async def test_download_resolve_urls(hf_hub: HubServer, tmp_path: Path, url_path: str, seeded: str, name: str) -> None:
    provider = provider_for(hf_hub)
    url = f"{hf_hub.endpoint}/{url_path}"

    assert provider.can_download(url)
    path = await provider.download(url, tmp_path)

    assert path == tmp_path / name
    assert path.read_bytes() == SEEDED_HF_FILES[seeded]
    assert listing(tmp_path) == [name]  # the staging folder and hub metadata are gone


async def test_private_repo_needs_the_token_from_request_credentials(hf_hub: HubServer, tmp_path: Path) -> None:
    provider = provider_for(hf_hub)
    url = f"{hf_hub.endpoint}/acme/private-model/resolve/main/secret.txt"

    with pytest.raises(InputStagingError, match="401"):
        await provider.download(url, tmp_path)
    credential = Credential(url_pattern=f"{hf_hub.endpoint}/acme/**", auth={"type": "bearer", "token": hf_hub.token})
    path = await provider.download(url, tmp_path, credentials=[credential])

    assert path.read_bytes() == b"private bytes"


async def test_missing_entry_and_repo_are_the_callers_fault(hf_hub: HubServer, tmp_path: Path) -> None:
    provider = provider_for(hf_hub)
    with pytest.raises(InputStagingError, match=r"EntryNotFound|404"):
        await provider.download(f"{hf_hub.endpoint}/acme/tiny-model/resolve/main/nope.bin", tmp_path)
    with pytest.raises(InputStagingError, match=r"RepositoryNotFound|404"):
        await provider.download(f"{hf_hub.endpoint}/acme/ghost/resolve/main/x.bin", tmp_path)
    assert listing(tmp_path) == []


async def test_download_over_limit_is_refused(hf_hub: HubServer, tmp_path: Path) -> None:
    provider = provider_for(hf_hub)
    url = f"{hf_hub.endpoint}/acme/tiny-model/resolve/main/weights/model.safetensors"

    with pytest.raises(InputStagingError, match="over the limit"):
        await provider.download(url, tmp_path, max_bytes=1024)
    assert listing(tmp_path) == []


@pytest.mark.parametrize(("repo", "repo_type"), [("acme/uploads", "model"), ("acme/upload-data", "dataset")])
async def test_upload_commits_file_readable_at_returned_url(
    hf_hub: HubServer, tmp_path: Path, repo: str, repo_type: str
) -> None:
    provider = provider_for(hf_hub, token=hf_hub.token)
    data = os.urandom(300_000)
    source = write_file(tmp_path, "render.png", data)

    uploaded = await provider.upload(
        source, key="outputs/job-9/render.png", content_type="image/png", options={"repo": repo, "repo_type": repo_type}
    )

    prefix = "" if repo_type == "model" else "datasets/"
    assert uploaded.url == f"{hf_hub.endpoint}/{prefix}{repo}/resolve/main/outputs/job-9/render.png"
    assert uploaded.size_bytes == len(data)
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(uploaded.url)
    assert response.status_code == 200 and response.content == data
    # And through the provider's own download path.
    again = await provider.download(uploaded.url, tmp_path / "back")
    assert again.read_bytes() == data


async def test_upload_to_unknown_repo_fails_without_leaking_the_token(
    hf_hub: HubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = provider_for(hf_hub, token=hf_hub.token)
    source = write_file(tmp_path, "a.png", b"png")

    with pytest.raises(StorageError) as caught:
        await provider.upload(source, key="a.png", content_type="image/png", options={"repo": "acme/not-a-repo"})

    assert caught.value.provider == "hf"
    assert "RepositoryNotFound" in caught.value.message or "404" in caught.value.message
    assert_no_secret([hf_hub.token], str(caught.value), repr(caught.value), all_log_text(caplog))


async def test_upload_with_a_wrong_token_and_with_none(hf_hub: HubServer, tmp_path: Path) -> None:
    source = write_file(tmp_path, "a.png", b"png")
    wrong = provider_for(hf_hub, token="hf_wrong_token_0000")

    with pytest.raises(StorageError, match="401") as caught:
        await wrong.upload(source, key="a.png", content_type="image/png", options={"repo": "acme/uploads"})
    with pytest.raises(StorageError, match="HF_TOKEN"):
        await provider_for(hf_hub).upload(
            source, key="a.png", content_type="image/png", options={"repo": "acme/uploads"}
        )

    assert "hf_wrong_token_0000" not in str(caught.value)


async def test_server_down_raises_storage_error_within_the_timeout(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    # huggingface_hub retries refused connections for ~20 s; the provider's timeout cuts that short.
    provider = HuggingFaceProvider(endpoint=endpoint, token="hf_x_token_1234", timeout_s=1.5)
    source = write_file(tmp_path, "a.png", b"png")

    with pytest.raises(StorageError, match=re.escape("did not finish within 1.5 s")):
        await provider.download(f"{endpoint}/acme/m/resolve/main/a.png", tmp_path / "in")
    with pytest.raises(StorageError) as caught:
        await provider.upload(source, key="a.png", content_type="image/png", options={"repo": "acme/m"})
    assert "hf_x_token_1234" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://hub.test/acme/m/resolve/main/a/b.bin", ("model", "acme/m", "main", "a/b.bin")),
        ("https://hub.test/gpt2/resolve/v1.0/config.json", ("model", "gpt2", "v1.0", "config.json")),
        ("https://hub.test/spaces/acme/s/resolve/refs%2Fpr%2F1/app.py", ("space", "acme/s", "refs/pr/1", "app.py")),
        ("https://hub.test/datasets/acme/d/resolve/main/x%20y.csv", ("dataset", "acme/d", "main", "x y.csv")),
        ("https://hub.test/acme/m/blob/main/a.bin", None),
        ("https://other.test/acme/m/resolve/main/a.bin", None),
        ("https://hub.test/a/b/c/resolve/main/a.bin", None),
    ],
)
def test_parse_resolve_url(url: str, expected: tuple[str, str, str, str] | None) -> None:
    parsed = parse_resolve_url(url, "https://hub.test")
    assert (None if parsed is None else (parsed.repo_type, parsed.repo_id, parsed.revision, parsed.path)) == expected
