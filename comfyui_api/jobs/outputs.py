"""Output collection: every file and text a finished prompt reported (history `outputs` or `executed` frames),
brought into our work folder as `OutputFile`s, and removed from ComfyUI's folders unless kept.

Reads files from disk when ComfyUI shares our filesystem, else through `ComfyClient.download_output` (started as
each node reports its files: `OutputPrefetch`).
Holds paths, never whole files in memory. Knows nothing about HTTP responses or storage providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import itertools
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
JOB_FILE_SEPARATOR = "@"  # never in a job id: ids are letters, digits, "_", "-" and "." (dialects.salad.JOB_ID_PATTERN)


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


def _copy_file(source: Path, dest: Path, *, keep: bool) -> None:
    """A byte copy, for when a rename or hard link cannot be used (another file system); the source goes unless kept."""
    shutil.copyfile(source, dest)
    if not keep:
        source.unlink()


async def _take_file(source: Path, dest: Path, *, keep: bool) -> int:
    """Bring ComfyUI's file into our folder: a rename when it may go, a hard link when kept; a copy (in a worker
    thread) only across file systems. Returns its size. Never a symlink: the original may be removed while we still
    stream ours. Renames and links are metadata calls, cheaper on the event loop than a thread hop."""
    try:
        if keep:
            os.link(source, dest)
        else:
            os.rename(source, dest)
    except FileNotFoundError:
        raise
    except OSError:
        await asyncio.to_thread(_copy_file, source, dest, keep=keep)
    return dest.stat().st_size  # noqa: ASYNC240 - a metadata call: cheaper than a thread hop


def _job_prefix(job_id: str) -> str:
    """What the names of a job's files in the flat work folder start with."""
    if JOB_FILE_SEPARATOR in job_id or "/" in job_id or "\\" in job_id:
        raise ValueError(f"job id {job_id!r} cannot name a local file")
    return f"{job_id}{JOB_FILE_SEPARATOR}"


_PREFETCH_IN_FLIGHT = 4  # downloads one job runs at once while ComfyUI is still working
# A file whose prompt ends within this long of reporting it is collected as usual (most often the last save of a
# prompt): a prefetch would only add a task between the download and the job.
_PREFETCH_AFTER_S = 0.005

_Key = tuple[str, str, str]  # ComfyUI's reference to a file: filename, subfolder, type


class OutputPrefetch:
    """One job's saved outputs fetched through GET /view while the prompt goes on after its node reported them (no
    shared disk), so that the downloads overlap the rest of the run instead of following it;
    `OutputCollector.collect` takes them over by ComfyUI's reference. Previews (`temp`) are left for the collector:
    they count only when nothing was saved. What is not taken (the run failed, or its history named other files) is
    removed by `aclose`."""

    def __init__(self, client: OutputDownloader, prefix: Path):
        self._client = client
        self._prefix = prefix  # the job's files in the work folder start so (OutputCollector.remove_job_files)
        self._slots = asyncio.Semaphore(_PREFETCH_IN_FLIGHT)
        self._waiting: dict[_Key, asyncio.TimerHandle] = {}
        self._fetches: dict[_Key, tuple[asyncio.Task[int], Path]] = {}
        self._numbers = itertools.count()

    def node_reported(self, node_id: str, ui: Mapping[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        for ref in _node_refs(node_id, ui):
            key = (ref.filename, ref.subfolder, ref.folder_type)
            if ref.folder_type == "output" and key not in self._waiting and key not in self._fetches:
                self._waiting[key] = loop.call_later(_PREFETCH_AFTER_S, self._start, key)

    def _start(self, key: _Key) -> None:
        self._waiting.pop(key, None)
        path = Path(f"{self._prefix}{next(self._numbers)}")
        self._fetches[key] = (asyncio.create_task(self._fetch(key, path), name=f"prefetch:{path.name}"), path)

    async def _fetch(self, key: _Key, path: Path) -> int:
        async with self._slots:
            return await self._client.download_output(*key, path)

    async def take(self, ref: OutputRef, dest: Path) -> int | None:
        """The file's size once it is at `dest`, or None when its download had not started (the caller downloads
        it); a failed download raises."""
        key = (ref.filename, ref.subfolder, ref.folder_type)
        waiting = self._waiting.pop(key, None)
        if waiting is not None:
            waiting.cancel()
        fetch = self._fetches.pop(key, None)
        if fetch is None:
            return None
        task, path = fetch
        size_bytes = await task
        os.replace(path, dest)
        return size_bytes

    async def aclose(self) -> None:
        for waiting in self._waiting.values():
            waiting.cancel()
        self._waiting.clear()
        fetches = list(self._fetches.values())
        self._fetches.clear()
        for task, _ in fetches:
            task.cancel()
        await asyncio.gather(*(task for task, _ in fetches), return_exceptions=True)
        for _, path in fetches:
            path.unlink(missing_ok=True)


def discard(outputs: Iterable[OutputFile]) -> None:
    """Remove the local files of delivered outputs."""
    for output in outputs:
        if output.path is not None:
            output.path.unlink(missing_ok=True)
            output.path = None


class OutputCollector:
    """Collects a prompt's outputs into one flat work folder, each named `<job id>@<index>_<filename>`.

    Flat on purpose: a folder per job costs a mkdir and an rmdir per job, the slowest file-system calls of a short
    job. `@` never occurs in a job id, so the `<job id>@` prefix names exactly one job's files."""

    def __init__(self, settings: ComfySettings, client: OutputDownloader, work_dir: Path):
        self._settings = settings
        self._client = client
        self._work_dir = work_dir
        self._work_dir.mkdir(parents=True, exist_ok=True)
        # ComfyUI's `--temp-directory X` writes into X/temp, so TEMP_DIR may name either folder.
        self._roots = {"output": [settings.output_dir], "temp": [settings.temp_dir, settings.temp_dir / "temp"]}

    def local_path(self, job_id: str, index: int, filename: str) -> Path:
        return self._work_dir / f"{_job_prefix(job_id)}{index:03d}_{Path(filename).name}"

    def remove_job_files(self, job_id: str) -> None:
        """Remove whatever is left of a job's collected (or converted) outputs, e.g. after it failed."""
        prefix = f"{job_id}{JOB_FILE_SEPARATOR}"
        with contextlib.suppress(FileNotFoundError), os.scandir(self._work_dir) as entries:
            for entry in entries:
                if entry.name.startswith(prefix):
                    Path(entry.path).unlink(missing_ok=True)

    def remove_comfy_files(self, prefixes: Iterable[str], outputs_by_node: Mapping[str, Any]) -> int:
        """After a job failed and its prompt left ComfyUI: remove what it left in ComfyUI's output and temp folders,
        the files ComfyUI reported (`outputs_by_node`, e.g. previews) and every file named by one of the job's
        `filename_prefix`es (which start with its job id). Only where ComfyUI shares our disk; returns how many."""
        if not self._settings.outputs_colocated:
            return 0
        removed = 0
        refs = [
            ref for node_id, ui in outputs_by_node.items() if isinstance(ui, Mapping) for ref in _node_refs(node_id, ui)
        ]
        for ref in [ref for ref in refs if ref.folder_type in _COLLECTED_TYPES]:
            with contextlib.suppress(ComfyProtocolError, OSError):
                path = self._local_path(ref)
                path.unlink()
                removed += 1
        for prefix in prefixes:
            folder, _, name = prefix.replace("\\", "/").rpartition("/")
            if not name:
                continue
            for root in (self._settings.output_dir, *self._roots["temp"]):
                base = (root / folder).resolve()
                if not base.is_relative_to(root.resolve()) or not base.is_dir():
                    continue
                for path in base.glob(f"{glob.escape(name)}*"):
                    if path.is_file():
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def prefetch(self, job_id: str) -> OutputPrefetch | None:
        """A job's output prefetch when outputs come through GET /view; None when they are read from disk."""
        if self._settings.outputs_colocated:
            return None
        return OutputPrefetch(self._client, self._work_dir / f"{_job_prefix(job_id)}prefetch-")

    async def collect(
        self,
        job_id: str,
        outputs_by_node: Mapping[str, Any],
        *,
        keep: bool | None = None,
        prefetched: OutputPrefetch | None = None,
    ) -> tuple[list[OutputFile], list[str]]:
        """Bring every reported file into the work folder (sequentially: disk-bound, and keeps order), taking over
        what was `prefetched`. On failure the files already collected are removed."""
        refs, texts = parse_outputs(outputs_by_node)
        keep_files = self._settings.keep_outputs if keep is None else keep
        files: list[OutputFile] = []
        try:
            for index, ref in enumerate(refs):
                dest = self.local_path(job_id, index, ref.filename)
                files.append(await self._collect_one(ref, dest, keep_files, prefetched))
        except BaseException:
            discard(files)
            raise
        return files, texts

    async def _collect_one(
        self, ref: OutputRef, dest: Path, keep: bool, prefetched: OutputPrefetch | None
    ) -> OutputFile:
        if self._settings.outputs_colocated:
            source = self._local_path(ref)
            try:
                size_bytes = await _take_file(source, dest, keep=keep)
            except FileNotFoundError:
                raise ComfyProtocolError(
                    f"ComfyUI reported output {ref.subfolder}/{ref.filename} ({ref.folder_type}) but it is not on disk"
                ) from None
        else:
            taken = await prefetched.take(ref, dest) if prefetched is not None else None
            if taken is None:
                taken = await self._client.download_output(ref.filename, ref.subfolder, ref.folder_type, dest)
            size_bytes = taken
        return OutputFile(
            node_id=ref.node_id,
            kind=ref.kind,
            filename=ref.filename,
            subfolder=ref.subfolder,
            comfy_type=ref.folder_type,
            content_type=media.content_type_for(dest),  # reads the first few bytes only
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
