"""Output collection: every file and text a finished prompt reported (history `outputs` or `executed` frames),
brought into the job's own work folder as `OutputFile`s, and removed from ComfyUI's folders unless kept.

Reads files from disk when ComfyUI shares our filesystem, else through `ComfyClient.download_output`.
Holds paths, never whole files in memory. Knows nothing about HTTP responses or storage providers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from comfyui_api.errors import ComfyProtocolError
from comfyui_api.jobs import media
from comfyui_api.jobs.model import OutputFile
from comfyui_api.settings import ComfySettings

_VIDEO_EXTENSIONS = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})
_FILE_KINDS = {"images": "image", "gifs": "animated", "videos": "video", "video": "video", "audio": "audio"}
_FILE_KINDS |= {"latents": "latent", "3d": "file", "meshes": "file"}
_TEXT_KEYS = ("text",)
_COLLECTED_TYPES = ("output", "temp")


class OutputDownloader(Protocol):
    async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int: ...


@dataclass(frozen=True)
class OutputRef:
    """One file as ComfyUI reported it."""

    node_id: str
    kind: str
    filename: str
    subfolder: str
    folder_type: str


def _kind(key: str, filename: str, animated: bool) -> str:
    if Path(filename).suffix.lower() in _VIDEO_EXTENSIONS:
        return "video"
    kind = _FILE_KINDS.get(key, "file")
    if kind == "image" and animated:
        return "animated"
    return kind


def _is_animated(ui: Mapping[str, Any]) -> bool:
    flags = ui.get("animated")
    return isinstance(flags, list | tuple) and any(flag is True for flag in flags)


def _node_refs(node_id: str, ui: Mapping[str, Any]) -> list[OutputRef]:
    animated = _is_animated(ui)
    refs: list[OutputRef] = []
    for key, entries in ui.items():
        if not isinstance(entries, list | tuple):
            continue
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("filename"), str):
                continue
            filename, subfolder, folder_type = entry["filename"], entry.get("subfolder"), entry.get("type")
            subfolder = subfolder if isinstance(subfolder, str) else ""
            folder_type = folder_type if isinstance(folder_type, str) else "output"
            refs.append(OutputRef(str(node_id), _kind(key, filename, animated), filename, subfolder, folder_type))
    return refs


def _node_texts(ui: Mapping[str, Any]) -> list[str]:
    texts: list[str] = []
    for key in _TEXT_KEYS:
        values = ui.get(key)
        if isinstance(values, str):
            texts.append(values)
        elif isinstance(values, list | tuple):
            texts.extend(value if isinstance(value, str) else str(value) for value in values)
    return texts


def parse_outputs(outputs_by_node: Mapping[str, Any]) -> tuple[list[OutputRef], list[str]]:
    """Files and texts of a prompt, in ComfyUI's order. `temp` files (previews) count only when the prompt
    saved nothing of type `output`; files of other types (e.g. `input`) are never collected."""
    refs: list[OutputRef] = []
    texts: list[str] = []
    for node_id, ui in outputs_by_node.items():
        if isinstance(ui, Mapping):
            refs.extend(_node_refs(str(node_id), ui))
            texts.extend(_node_texts(ui))
    refs = [ref for ref in refs if ref.folder_type in _COLLECTED_TYPES]
    if any(ref.folder_type == "output" for ref in refs):
        refs = [ref for ref in refs if ref.folder_type == "output"]
    return refs, texts


def _take_file(source: Path, dest: Path, *, keep: bool) -> int:
    """Bring ComfyUI's file into our folder (a move when it may go, a hard link or else a copy when kept); returns
    its size. Never a symlink: the original may be removed while we still stream ours."""
    if keep:
        try:
            os.link(source, dest)
        except OSError:
            shutil.copyfile(source, dest)
    else:
        shutil.move(source, dest)
    return dest.stat().st_size


def discard(outputs: Iterable[OutputFile]) -> None:
    """Remove the local files of delivered outputs and their (then empty) job folders."""
    folders: set[Path] = set()
    for output in outputs:
        if output.path is not None:
            output.path.unlink(missing_ok=True)
            folders.add(output.path.parent)
            output.path = None
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


class OutputCollector:
    """Collects a prompt's outputs into `<work_dir>/<job id>/`."""

    def __init__(self, settings: ComfySettings, client: OutputDownloader, work_dir: Path):
        self._settings = settings
        self._client = client
        self._work_dir = work_dir
        # ComfyUI's `--temp-directory X` writes into X/temp, so TEMP_DIR may name either folder.
        self._roots = {"output": [settings.output_dir], "temp": [settings.temp_dir, settings.temp_dir / "temp"]}

    def job_dir(self, job_id: str) -> Path:
        return self._work_dir / job_id

    def remove_job_dir(self, job_id: str) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    async def collect(
        self, job_id: str, outputs_by_node: Mapping[str, Any], *, keep: bool | None = None
    ) -> tuple[list[OutputFile], list[str]]:
        """Bring every reported file into the job folder (sequentially: disk-bound, and keeps order)."""
        refs, texts = parse_outputs(outputs_by_node)
        keep_files = self._settings.keep_outputs if keep is None else keep
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        files = [
            await self._collect_one(ref, job_dir / f"{index:03d}_{ref.filename}", keep_files)
            for index, ref in enumerate(refs)
        ]
        return files, texts

    async def _collect_one(self, ref: OutputRef, dest: Path, keep: bool) -> OutputFile:
        if self._settings.outputs_colocated:
            source = await asyncio.to_thread(self._local_path, ref)
            try:
                size_bytes = await asyncio.to_thread(_take_file, source, dest, keep=keep)
            except FileNotFoundError:
                raise ComfyProtocolError(
                    f"ComfyUI reported output {ref.subfolder}/{ref.filename} ({ref.folder_type}) but it is not on disk"
                ) from None
        else:
            size_bytes = await self._client.download_output(ref.filename, ref.subfolder, ref.folder_type, dest)
        content_type = await asyncio.to_thread(media.content_type_for, dest)
        return OutputFile(
            node_id=ref.node_id,
            kind=ref.kind,
            filename=ref.filename,
            subfolder=ref.subfolder,
            comfy_type=ref.folder_type,
            content_type=content_type,
            size_bytes=size_bytes,
            path=dest,
        )

    def _local_path(self, ref: OutputRef) -> Path:
        candidates = [self._local_candidate(root, ref) for root in self._roots[ref.folder_type]]
        return next((path for path in candidates if path.exists()), candidates[0])

    @staticmethod
    def _local_candidate(root: Path, ref: OutputRef) -> Path:
        root = root.resolve()
        path = (root / ref.subfolder / ref.filename).resolve()
        if not path.is_relative_to(root):
            raise ComfyProtocolError(f"ComfyUI reported an output outside its {ref.folder_type} folder: {ref}")
        return path
