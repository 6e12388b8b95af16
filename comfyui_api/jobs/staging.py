"""Input staging: turns the media inputs of a graph (base64, data URIs, URLs) into real files under
`<input_dir>/<job id>/`, hands them to a ComfyUI that cannot read that folder through an `InputUploader`, and
rewrites the graph to the names ComfyUI sees; removes the local folder after the job.

Plain file names pass through untouched. Never writes symlinks (ComfyUI refuses them). Knows nothing about HTTP
routes or ComfyUI's protocol; other URL schemes (s3://, blob URLs, ...) are handed to an optional `RemoteSource`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import shutil
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from comfyui_api.comfy import graph as comfy_graph
from comfyui_api.errors import ComfyApiError, InputStagingError, InvalidRequest, URLRefused
from comfyui_api.jobs import media
from comfyui_api.jobs.model import NamedInput
from comfyui_api.settings import JobSettings
from comfyui_api.storage.base import Credential
from comfyui_api.storage.filenames import path_escape, safe_filename

log = logging.getLogger(__name__)

_SAFE_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
_BASE64_MIN_CHARS = 64  # shorter strings without a dot are treated as (odd) file names, not as base64
_WRITE_CHUNK_BYTES = 1024 * 1024
_NAMED_FOLDER = "named"  # files sent by name (RunPod's images/videos/files), inside the job's input folder


class RemoteSource(Protocol):
    """Fetches URLs the stager does not handle itself (e.g. a storage registry for s3://, blob and hf URLs)."""

    def can_download(self, url: str) -> bool: ...

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path: ...


class InputUploader(Protocol):
    """Puts a local file into the input folder of a ComfyUI on another machine (ComfyClient.upload_input).

    Returns the name ComfyUI stored it under, `<subfolder>/<name>`. ComfyUI cannot delete inputs, so uploaded
    files stay in its input folder after the job; only the local copy is removed.
    """

    async def upload_input(self, path: Path, subfolder: str, *, timeout_s: float | None = None) -> str: ...


@dataclass(frozen=True)
class StagedInput:
    node_id: str
    input_name: str
    path: Path  # the real file under the job's local input folder
    value: str  # what the graph now says: "<job id>/<name>.<ext>", relative to ComfyUI's input dir
    content_type: str


def is_safe_job_id(job_id: str) -> bool:
    """True when `job_id` can name a folder: one path component, no traversal."""
    return bool(_SAFE_JOB_ID.match(job_id)) and job_id not in (".", "..")


def field_name(node_id: str, input_name: str) -> str:
    return f"prompt.{node_id}.inputs.{input_name}"


def looks_like_base64(value: str) -> bool:
    """Base64 never contains a dot, file names almost always do; very short strings are names either way."""
    return "." not in value and len(value) >= _BASE64_MIN_CHARS


def decode_base64(text: str, *, max_bytes: int, field: str) -> bytes:
    """Standard or URL-safe base64, whitespace and missing padding tolerated; anything else is an error."""
    compact = "".join(text.split())
    if len(compact) * 3 // 4 > max_bytes:
        raise InputStagingError(f"input is larger than the limit of {max_bytes} bytes", field=field)
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InputStagingError("input is neither a file name, a URL nor valid base64", field=field) from None


def decode_data_uri(uri: str, *, max_bytes: int, field: str) -> bytes:
    """`data:[<type>][;base64],<payload>` -> bytes. The declared type is ignored: the bytes are sniffed."""
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InputStagingError("data URI has no ',' separating header and payload", field=field)
    if header.endswith(";base64"):
        return decode_base64(payload, max_bytes=max_bytes, field=field)
    data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise InputStagingError(f"input is larger than the limit of {max_bytes} bytes", field=field)
    return data


_ANNOTATION = re.compile(r"\s*\[(output|temp)\]\s*$")


def check_relative_path(value: str, field: str, what: str) -> None:
    """A name that must stay inside the folder it is relative to (see `path_escape`): InvalidRequest naming the field
    otherwise; the message shows no server path."""
    escape = path_escape(value)
    if escape is not None:
        raise InvalidRequest(f"{what} must stay inside ComfyUI's folder: it has {escape}", field=field)


def check_input_name(value: str, input_dir: Path, field: str) -> None:
    """A plain media file name must name a file inside ComfyUI's input folder: `[output]`/`[temp]` annotations (which
    reach other jobs' files) and names that resolve outside `input_dir` (through a symlink, say) are refused too."""
    check_relative_path(value, field, "a media file name")
    if _ANNOTATION.search(value):
        raise InvalidRequest("a media file name may only name a file in ComfyUI's input folder", field=field)
    root = input_dir.resolve()
    if not (root / value.replace("\\", "/")).resolve().is_relative_to(root):
        raise InvalidRequest("a media file name must stay inside ComfyUI's input folder", field=field)


def _is_encoded(value: str) -> bool:
    return value.startswith("data:") or looks_like_base64(value)


def _needs_staging(value: str | list[str]) -> bool:
    values = [value] if isinstance(value, str) else value
    return any(_URL_SCHEME.match(item) or _is_encoded(item) for item in values)


def _write_bytes(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)


class InputStager:
    """Stages one job's media inputs. One instance serves every job; transfers are bounded across all of them.

    With an `uploader` (ComfyUI does not share `input_dir`), every staged file is also uploaded into ComfyUI's
    input folder under the same `<job id>/...` path, each upload bounded by INPUT_DOWNLOAD_TIMEOUT_S; without one,
    ComfyUI reads the files from `input_dir` directly.
    """

    def __init__(
        self,
        settings: JobSettings,
        input_dir: Path,
        *,
        http: httpx.AsyncClient,
        remote: RemoteSource | None = None,
        uploader: InputUploader | None = None,
    ):
        self._settings = settings
        self._input_dir = input_dir
        self._http = http
        self._remote = remote
        self._uploader = uploader
        self._download_slots = asyncio.Semaphore(settings.max_parallel_downloads)

    def job_dir(self, job_id: str) -> Path:
        if not is_safe_job_id(job_id):
            raise InvalidRequest("id must be 1-128 letters, digits, '_', '-' or '.'", field="id")
        return self._input_dir / job_id

    async def stage(
        self,
        job_id: str,
        graph: Mapping[str, Any],
        *,
        credentials: Sequence[Credential] = (),
        named: Sequence[NamedInput] = (),
    ) -> tuple[dict[str, Any], list[StagedInput]]:
        """Stage every encoded or remote media input, and every file sent by name (`named`, with the inputs naming
        it pointed at it); returns the rewritten graph and what was staged. Plain file names and output prefixes
        that would reach outside ComfyUI's folders are refused first (400 naming the field), before anything is
        fetched."""
        named_staged: list[StagedInput] = []
        if named:
            graph, named_staged = await self._stage_named(job_id, graph, named, credentials)
        inputs = comfy_graph.media_inputs(graph)
        self._check_names(graph, inputs)
        pending = [item for item in inputs if _needs_staging(item.value)]
        if not pending:
            return dict(graph), named_staged
        job_dir = self.job_dir(job_id)
        job_dir.mkdir(parents=True, exist_ok=True)
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self._stage_input(job_id, job_dir, item, credentials)) for item in pending]
        except BaseExceptionGroup as failures:
            raise _first_error(failures) from None
        rewritten: dict[str, Any] = dict(graph)
        staged: list[StagedInput] = list(named_staged)
        for item, task in zip(pending, tasks, strict=True):
            value, files = task.result()
            rewritten = comfy_graph.with_input(rewritten, item.node_id, item.input_name, value)
            staged.extend(files)
        return rewritten, staged

    async def _stage_named(
        self, job_id: str, graph: Mapping[str, Any], named: Sequence[NamedInput], credentials: Sequence[Credential]
    ) -> tuple[dict[str, Any], list[StagedInput]]:
        """Each named file into `<job>/named/<its sanitised name>`; inputs naming it now name that."""
        folder = self.job_dir(job_id) / _NAMED_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        renames: dict[str, str] = {}
        staged: list[StagedInput] = []
        taken: set[str] = set()
        for index, item in enumerate(named):
            name = safe_filename(item.name, fallback=f"input-{index}")
            if name in taken:
                name = f"{index}-{name}"
            taken.add(name)
            path, content_type = await self._stage_named_file(item, folder, name, f"{index:04d}", credentials)
            value = await self._hand_over(path, f"{job_id}/{_NAMED_FOLDER}", item.field)
            renames[item.name] = value
            staged.append(StagedInput("", item.name, path, value, content_type))
        return comfy_graph.rename_inputs(graph, renames), staged

    async def _stage_named_file(
        self, item: NamedInput, folder: Path, name: str, stem: str, credentials: Sequence[Credential]
    ) -> tuple[Path, str]:
        if _URL_SCHEME.match(item.data):
            raw_path = await self._fetch(item.data, folder, stem, item.field, credentials)
        elif _is_encoded(item.data) or not item.media_only:
            raw_path = folder / f"{stem}.part"
            await asyncio.to_thread(self._decode_to_file, item.data, raw_path, item.field)
        else:
            raise InputStagingError("expected base64, a data URI or an http(s) URL", field=item.field)
        found = await asyncio.to_thread(media.sniff_file, raw_path)
        if found is None and item.media_only:
            raw_path.unlink(missing_ok=True)
            raise InputStagingError("unrecognised media type: not an image, video or audio file", field=item.field)
        final = folder / name
        raw_path.replace(final)
        return final, found.content_type if found is not None else "application/octet-stream"

    def _check_names(self, graph: Mapping[str, Any], inputs: Sequence[comfy_graph.MediaInput]) -> None:
        for item in inputs:
            values = [item.value] if isinstance(item.value, str) else item.value
            for index, value in enumerate(values):
                if _needs_staging(value):
                    continue
                field = field_name(item.node_id, item.input_name)
                if isinstance(item.value, list):
                    field = f"{field}[{index}]"
                check_input_name(value, self._input_dir, field)
        for node_id, prefix in comfy_graph.filename_prefixes(graph):
            check_relative_path(prefix, field_name(node_id, "filename_prefix"), "an output name prefix")

    def cleanup(self, job_id: str) -> None:
        """Remove the job's input folder (idempotent)."""
        if is_safe_job_id(job_id):
            shutil.rmtree(self._input_dir / job_id, ignore_errors=True)

    async def _stage_input(
        self, job_id: str, job_dir: Path, item: comfy_graph.MediaInput, credentials: Sequence[Credential]
    ) -> tuple[str, list[StagedInput]]:
        """One input -> (its new value, the files written). A list (a folder of images) becomes a folder."""
        field = field_name(item.node_id, item.input_name)
        stem = f"{_UNSAFE_NAME_CHARS.sub('_', item.node_id)}-{_UNSAFE_NAME_CHARS.sub('_', item.input_name)}"
        if isinstance(item.value, str) and item.kind != "directory":
            path, found = await self._stage_file(item.value, job_dir, stem, field, credentials)
            value = await self._hand_over(path, job_id, field)
            return value, [StagedInput(item.node_id, item.input_name, path, value, found.content_type)]
        values = [item.value] if isinstance(item.value, str) else item.value
        folder = job_dir / stem
        folder.mkdir()
        files: list[StagedInput] = []
        for index, value in enumerate(values):
            element_field = f"{field}[{index}]" if isinstance(item.value, list) else field
            path, found = await self._stage_file(value, folder, f"{index:04d}", element_field, credentials)
            relative = await self._hand_over(path, f"{job_id}/{stem}", element_field)
            files.append(StagedInput(item.node_id, item.input_name, path, relative, found.content_type))
        return f"{job_id}/{stem}", files

    async def _hand_over(self, path: Path, subfolder: str, field: str) -> str:
        """The name ComfyUI will find the staged file under: uploaded into `subfolder` when ComfyUI is remote."""
        if self._uploader is None:
            return f"{subfolder}/{path.name}"
        async with self._download_slots:
            try:
                return await self._uploader.upload_input(path, subfolder, timeout_s=self._settings.download_timeout_s)
            except ComfyApiError as exc:
                exc.field = exc.field or field
                raise

    async def _stage_file(
        self, value: str, folder: Path, stem: str, field: str, credentials: Sequence[Credential]
    ) -> tuple[Path, media.MediaType]:
        if _URL_SCHEME.match(value):
            raw_path = await self._fetch(value, folder, stem, field, credentials)
        elif _is_encoded(value):
            raw_path = folder / f"{stem}.part"
            await asyncio.to_thread(self._decode_to_file, value, raw_path, field)
        else:
            raise InputStagingError("expected base64, a data URI or a URL for each entry of this list", field=field)
        found = await asyncio.to_thread(media.sniff_file, raw_path)
        if found is None:
            raw_path.unlink(missing_ok=True)
            raise InputStagingError("unrecognised media type: not an image, video or audio file", field=field)
        final = folder / f"{stem}.{found.extension}"
        raw_path.replace(final)
        return final, found

    def _decode_to_file(self, value: str, dest: Path, field: str) -> None:
        limit = self._settings.max_input_bytes
        if value.startswith("data:"):
            data = decode_data_uri(value, max_bytes=limit, field=field)
        else:
            data = decode_base64(value, max_bytes=limit, field=field)
        if len(data) > limit:
            raise InputStagingError(f"input is larger than the limit of {limit} bytes", field=field)
        _write_bytes(dest, data)

    async def _fetch(self, url: str, job_dir: Path, stem: str, field: str, credentials: Sequence[Credential]) -> Path:
        limit = self._settings.max_input_bytes
        async with self._download_slots:
            if self._remote is not None and self._remote.can_download(url):
                folder = job_dir / f"{stem}.remote"
                folder.mkdir()
                try:
                    async with asyncio.timeout(self._settings.download_timeout_s):
                        fetched = await self._remote.download(url, folder, credentials=credentials, max_bytes=limit)
                except TimeoutError:
                    raise InputStagingError(self._timeout_message(), field=field) from None
                except URLRefused as exc:
                    raise URLRefused(exc.message, field=field) from None
                except ComfyApiError as exc:
                    raise InputStagingError(f"download failed: {exc.message}", field=field) from None
                staged = fetched.rename(job_dir / f"{stem}.part")
                shutil.rmtree(folder, ignore_errors=True)
                return staged
            if url.lower().startswith(("http://", "https://")):
                dest = job_dir / f"{stem}.part"
                await self._download_http(url, dest, field)
                return dest
        scheme = url.split("://", 1)[0]
        raise InputStagingError(f"unsupported URL scheme {scheme!r} for a media input", field=field)

    def _timeout_message(self) -> str:
        return f"download did not finish within {self._settings.download_timeout_s:g}s"

    async def _download_http(self, url: str, dest: Path, field: str) -> None:
        limit = self._settings.max_input_bytes
        timeout_s = self._settings.download_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async with self._http.stream("GET", url, timeout=timeout_s, follow_redirects=True) as response:
                    if response.status_code >= 400:
                        raise InputStagingError(f"download failed: HTTP {response.status_code}", field=field)
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > limit:
                        raise InputStagingError(f"input is larger than the limit of {limit} bytes", field=field)
                    await self._save_stream(response, dest, limit, field)
        except TimeoutError:
            raise InputStagingError(self._timeout_message(), field=field) from None
        except URLRefused as exc:
            raise URLRefused(exc.message, field=field) from None
        except httpx.HTTPError as exc:
            raise InputStagingError(f"download failed: {type(exc).__name__}: {exc}", field=field) from None

    @staticmethod
    async def _save_stream(response: httpx.Response, dest: Path, limit: int, field: str) -> None:
        received = 0
        with dest.open("wb") as handle:
            async for chunk in response.aiter_bytes(_WRITE_CHUNK_BYTES):
                received += len(chunk)
                if received > limit:
                    raise InputStagingError(f"input is larger than the limit of {limit} bytes", field=field)
                handle.write(chunk)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The first leaf of a task group's failures, preferring our own errors (they name the field)."""
    leaves: list[BaseException] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        else:
            leaves.append(error)

    walk(group)
    for leaf in leaves:
        if isinstance(leaf, ComfyApiError):
            return leaf
    return leaves[0]
