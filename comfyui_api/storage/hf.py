"""Hugging Face Hub through huggingface_hub: downloads of `<endpoint>/[datasets/|spaces/]<repo>/resolve/<rev>/<path>`
URLs and uploads with the request options `{repo, repo_type, revision, directory}`. The endpoint and token come from
settings and are passed explicitly (never read from the environment here). Blocking hub calls run in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from comfyui_api.errors import InputStagingError, InvalidRequest, StorageError
from comfyui_api.storage.base import Credential, UploadedFile, reject_unknown_options
from comfyui_api.storage.credentials import bearer_token_for, describe_error, redact_url, secrets_of
from comfyui_api.storage.localfiles import check_size, file_size, reserve_path

logger = logging.getLogger(__name__)
T = TypeVar("T")

REPO_TYPES = ("model", "dataset", "space")
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_OPTIONS = ("repo", "repo_type", "revision", "directory")
_ETAG_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class HubFile:
    repo_type: str
    repo_id: str
    revision: str
    path: str


def parse_resolve_url(url: str, endpoint: str) -> HubFile | None:
    """`<endpoint>/[datasets/|spaces/]<repo id>/resolve/<revision>/<path>` -> HubFile; None for other URLs."""
    base = endpoint.rstrip("/") + "/"
    if not url.startswith(base):
        return None
    segments = [unquote(s) for s in urlsplit(url).path.removeprefix(urlsplit(base).path).split("/")]
    repo_type = "model"
    if segments and segments[0] in ("datasets", "spaces"):
        repo_type = segments.pop(0)[:-1]
    if "resolve" not in segments:
        return None
    at = segments.index("resolve")
    repo_segments, rest = segments[:at], segments[at + 1 :]
    if not 1 <= len(repo_segments) <= 2 or len(rest) < 2 or not all(repo_segments) or not all(rest):
        return None
    return HubFile(repo_type, "/".join(repo_segments), rest[0], "/".join(rest[1:]))


def resolve_url(endpoint: str, repo_type: str, repo_id: str, revision: str, path: str) -> str:
    prefix = _URL_PREFIX[repo_type]
    return f"{endpoint.rstrip('/')}/{prefix}{repo_id}/resolve/{quote(revision, safe='')}/{quote(path, safe='/')}"


class HuggingFaceProvider:
    """One Hub endpoint (huggingface.co or a mirror). Uploads need a token (HF_TOKEN or a request's bearer
    credential matching the repo's URL)."""

    name = "hf"

    def __init__(self, *, endpoint: str, token: str | None, timeout_s: float):
        self._endpoint = endpoint.rstrip("/")
        self._token = token
        self._timeout_s = timeout_s

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def can_download(self, url: str) -> bool:
        return parse_resolve_url(url, self._endpoint) is not None

    async def _in_thread(self, what: str, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking hub call on a daemon thread, waiting at most `timeout_s`. huggingface_hub calls cannot be
        cancelled (and retry for ~20 s on connection errors), so one that overruns is abandoned, not joined: a
        daemon thread keeps neither the event loop's shutdown nor the process's exit waiting for it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def settle(outcome: Callable[[], None]) -> None:
            if not future.done():
                outcome()

        def work() -> None:
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                report: Callable[[], None] = partial(future.set_exception, exc)
            else:
                report = partial(future.set_result, result)
            with contextlib.suppress(RuntimeError):  # the loop may be closed by the time an abandoned call ends
                loop.call_soon_threadsafe(settle, report)

        threading.Thread(target=work, name="hf-hub-call", daemon=True).start()
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            raise StorageError(f"{what} did not finish within {self._timeout_s:g} s", provider=self.name) from None

    def _error(self, exc: BaseException, what: str, secrets: Sequence[str], *, downloading: bool) -> Exception:
        detail = describe_error(exc, secrets).split("\n", 1)[0]
        status = exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
        not_found = isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError)
        not_found = not_found and not isinstance(exc, LocalEntryNotFoundError)  # that one means "hub unreachable"
        if downloading and (not_found or status in (401, 403, 404)):
            return InputStagingError(f"{what} failed: {detail}")
        return StorageError(f"{what} failed: {detail}", provider=self.name)

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        ref = parse_resolve_url(url, self._endpoint)
        if ref is None:
            raise InputStagingError(f"{redact_url(url)} is not a Hugging Face resolve URL")
        token = bearer_token_for(url, credentials) or self._token
        secrets = secrets_of(credentials, urls=(url,), extra=(self._token,))
        what = f"download of {redact_url(url)}"
        try:
            return await self._in_thread(
                what, self._download_blocking, ref, dest_dir, token, max_bytes, redact_url(url)
            )
        except (HfHubHTTPError, EntryNotFoundError, OSError, ValueError) as exc:
            raise self._error(exc, what, secrets, downloading=True) from None

    def _download_blocking(
        self, ref: HubFile, dest_dir: Path, token: str | None, max_bytes: int | None, shown: str
    ) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".hf-", dir=dest_dir))
        common: dict[str, Any] = {
            "repo_id": ref.repo_id,
            "filename": ref.path,
            "repo_type": ref.repo_type,
            "revision": ref.revision,
            "endpoint": self._endpoint,
            "token": token or False,  # False: never fall back to a token found on disk or in the environment
            "cache_dir": staging / "cache",
            "etag_timeout": _ETAG_TIMEOUT_S,
        }
        try:
            if max_bytes is not None:
                info = hf_hub_download(**common, dry_run=True)
                check_size(getattr(info, "file_size", None), max_bytes, shown)
            local = Path(str(hf_hub_download(**common, local_dir=staging / "files")))
            target = reserve_path(dest_dir, PurePosixPath(ref.path).name)
            os.replace(local, target)
            return target
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        repo = options.get("repo")
        if not isinstance(repo, str) or repo.count("/") != 1 or not all(repo.split("/")):
            raise InvalidRequest("repo must be a repository id like 'namespace/name'", field="repo")
        repo_type = options.get("repo_type", "model")
        if repo_type not in REPO_TYPES:
            raise InvalidRequest(f"repo_type must be one of: {', '.join(REPO_TYPES)}", field="repo_type")
        for name in ("revision", "directory"):
            value = options.get(name)
            if value is not None and not isinstance(value, str):
                raise InvalidRequest(f"{name} must be a string", field=name)
        reject_unknown_options(options, _OPTIONS)

    async def upload(
        self,
        path: Path,
        *,
        key: str,
        content_type: str,
        options: Mapping[str, Any],
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        repo_type = str(options.get("repo_type") or "model")
        revision = str(options.get("revision") or "main")
        repo_id = str(options["repo"])
        url = resolve_url(self._endpoint, repo_type, repo_id, revision, key)
        token = bearer_token_for(url, credentials) or self._token
        if not token:
            raise StorageError("uploads to Hugging Face need a token: set HF_TOKEN", provider=self.name)
        secrets = secrets_of(credentials, extra=(self._token, token))
        size_bytes = await file_size(path)
        api = HfApi(endpoint=self._endpoint, token=token)
        try:
            await self._in_thread(
                f"upload to {url}",
                api.upload_file,
                path_or_fileobj=str(path),
                path_in_repo=key,
                repo_id=repo_id,
                repo_type=repo_type,
                revision=revision,
                commit_message=f"Upload {key}",
            )
        except (HfHubHTTPError, OSError, ValueError, RuntimeError) as exc:
            raise self._error(exc, f"upload to {url}", secrets, downloading=False) from None
        return UploadedFile(url=url, size_bytes=size_bytes)

    async def aclose(self) -> None:
        return None
