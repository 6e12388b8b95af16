"""A model download is bounded by the free space where it lands, less a reserve: the provider gets that limit."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comfyui_api.models.download import FREE_SPACE_RESERVE_BYTES, room_for_download, storage_downloader
from comfyui_api.storage.base import Credential


class RecordingProvider:
    def __init__(self) -> None:
        self.max_bytes: int | None = -1

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        self.max_bytes = max_bytes
        return dest_dir / "model.safetensors"


class Source:
    def __init__(self, provider: Any):
        self.provider = provider

    def downloader_for(self, url: str) -> Any:
        return self.provider


async def test_the_provider_is_given_the_free_space_less_the_reserve(tmp_path: Path) -> None:
    provider = RecordingProvider()
    await storage_downloader(Source(provider))("https://models.example/m.safetensors", tmp_path, ())
    free = shutil.disk_usage(tmp_path).free
    assert provider.max_bytes is not None
    assert abs(provider.max_bytes - max(0, free - FREE_SPACE_RESERVE_BYTES)) < 64 * 1024**2  # other writers meanwhile
    assert await room_for_download(tmp_path / "missing") is None
