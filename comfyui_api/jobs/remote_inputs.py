"""Media inputs downloaded through the storage registry: the stager's `RemoteSource` for s3://, Azure blob, Hugging
Face and plain http(s) URLs, so request credentials and storage events apply to every input download.

Adapts the registry only; the staging rules (limits, sniffing, placement) stay with `jobs/staging.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from comfyui_api.errors import ComfyApiError
from comfyui_api.storage.base import Credential
from comfyui_api.storage.registry import StorageRegistry

_ALWAYS_OURS = ("s3", "http", "https")


class RegistryInputSource:
    """`RemoteSource` over a StorageRegistry. Downloads land under `<input_dir>/<job id>/...`, which names the job
    their storage events are reported for."""

    def __init__(self, storage: StorageRegistry, input_dir: Path):
        self._storage = storage
        self._input_dir = input_dir

    def can_download(self, url: str) -> bool:
        """s3:// and http(s):// always (an unavailable provider is then a download error that says why)."""
        if url.split("://", 1)[0].lower() in _ALWAYS_OURS:
            return True
        try:
            self._storage.downloader_for(url)
        except ComfyApiError:
            return False
        return True

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        return await self._storage.download(url, dest_dir, credentials, max_bytes, job_id=self._job_id_of(dest_dir))

    def _job_id_of(self, dest_dir: Path) -> str | None:
        try:
            parts = dest_dir.relative_to(self._input_dir).parts
        except ValueError:
            return None
        return parts[0] if parts else None
