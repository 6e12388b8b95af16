"""Plain HTTP(S) storage: downloads of any http(s) URL streamed to disk, uploads as `PUT <url_prefix>/<key>`
streamed from disk. Auth comes from per-request credentials, `user:pass@` in the URL, or the configured header.
Knows nothing of jobs; secrets never reach a message or log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from comfyui_api.errors import InputStagingError, InvalidRequest, StorageError
from comfyui_api.storage.base import Credential, UploadedFile, reject_unknown_options
from comfyui_api.storage.credentials import (
    describe_error,
    http_auth_for,
    matching_credential,
    redact_url,
    secrets_of,
    split_userinfo,
    strip_secrets,
)
from comfyui_api.storage.filenames import download_filename
from comfyui_api.storage.localfiles import IncomingFile, check_size, file_size, read_chunks
from comfyui_api.storage.outbound import MAX_REDIRECTS, OutboundGuard, refuse_downgrade

logger = logging.getLogger(__name__)

_PLAN_KEY = "comfyui_api.auth_plan"
_CONNECT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class _AuthPlan:
    """How to authenticate each request of one transfer, redirects included."""

    credentials: tuple[Credential, ...] = field(repr=False)
    default_header: tuple[str, str] | None = field(repr=False)
    origin: tuple[str, str, int | None]
    target: str  # the URL asked for, without userinfo or query
    target_query: str = field(default="", repr=False)  # its query (often a signature), added back below the client


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port)


class _CredentialTransport(httpx.AsyncBaseTransport):
    """Adds credentials to each outgoing request, redirects included, by matching the request's own URL. Working
    below the client keeps query secrets out of httpx's request log and off hosts a redirect leads to."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        plan = request.extensions.get(_PLAN_KEY)
        if isinstance(plan, _AuthPlan):
            request = self._authenticated(request, plan)
        return await self._inner.handle_async_request(request)

    @staticmethod
    def _authenticated(request: httpx.Request, plan: _AuthPlan) -> httpx.Request:
        headers = request.headers.copy()
        url = request.url
        if plan.target_query and str(url) == plan.target:
            url = url.copy_with(query=plan.target_query.encode("ascii"))
        credential = matching_credential(str(url), plan.credentials)
        if credential is not None:
            auth = http_auth_for(credential)
            for name, value in auth.headers:
                headers[name] = value
            if auth.query:
                url = url.copy_merge_params(dict(auth.query))
        elif plan.default_header is not None and _origin(url) == plan.origin:
            headers[plan.default_header[0]] = plan.default_header[1]
        extensions = {key: value for key, value in request.extensions.items() if key != _PLAN_KEY}
        return httpx.Request(request.method, url, headers=headers, stream=request.stream, extensions=extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class HttpProvider:
    """Downloads any http(s) URL; uploads with the request options `{url_prefix}`."""

    name = "http"

    def __init__(
        self,
        *,
        timeout_s: float,
        auth_header: tuple[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        guard: OutboundGuard | None = None,
    ):
        """`guard` checks every hop of every download and upload (request URLs); None only for operator-set URLs."""
        self._auth_header = auth_header
        inner = transport or (guard.transport(retries=1) if guard else httpx.AsyncHTTPTransport(retries=1))
        self._client = httpx.AsyncClient(
            transport=_CredentialTransport(inner),
            timeout=httpx.Timeout(timeout_s, connect=min(_CONNECT_TIMEOUT_S, timeout_s)),
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            event_hooks={"response": [refuse_downgrade]} if guard else None,
            trust_env=False,
        )

    def can_download(self, url: str) -> bool:
        return urlsplit(url).scheme.lower() in ("http", "https")

    def _plan(self, url: str, credentials: Sequence[Credential]) -> tuple[str, _AuthPlan, tuple[str, ...]]:
        """The URL to hand to httpx (no userinfo, no query: httpx logs request URLs) and how to authenticate."""
        without_userinfo, userinfo = split_userinfo(url)
        parts = urlsplit(without_userinfo)
        bare_url = str(httpx.URL(urlunsplit(parts._replace(query="", fragment=""))))
        creds = ((userinfo,) if userinfo else ()) + tuple(credentials)
        plan = _AuthPlan(
            credentials=creds,
            default_header=self._auth_header,
            origin=_origin(httpx.URL(bare_url)),
            target=bare_url,
            target_query=parts.query,
        )
        extra = (self._auth_header[1],) if self._auth_header else ()
        return bare_url, plan, secrets_of(creds, urls=(url,), extra=extra)

    async def download(
        self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
    ) -> Path:
        bare_url, plan, secrets = self._plan(url, credentials)
        shown = redact_url(url)
        try:
            async with self._client.stream("GET", bare_url, extensions={_PLAN_KEY: plan}) as response:
                if response.status_code >= 400:
                    message = f"GET {shown} answered {response.status_code} {response.reason_phrase}"
                    if response.status_code >= 500:
                        raise StorageError(message, provider=self.name)
                    raise InputStagingError(message)
                length = response.headers.get("content-length")
                check_size(int(length) if length and length.isdigit() else None, max_bytes, shown)
                async with IncomingFile(dest_dir, max_bytes=max_bytes, what=shown) as sink:
                    sink.name(
                        download_filename(
                            str(response.url),
                            content_disposition=response.headers.get("content-disposition"),
                            content_type=response.headers.get("content-type"),
                        )
                    )
                    async for chunk in response.aiter_bytes(1024 * 1024):
                        await sink.write(chunk)
        except httpx.HTTPError as exc:
            detail = describe_error(exc, secrets)
            raise StorageError(f"GET {shown} failed: {detail}", provider=self.name) from None
        assert sink.path is not None
        return sink.path

    def validate_upload_options(self, options: Mapping[str, Any]) -> None:
        prefix = options.get("url_prefix")
        if not isinstance(prefix, str) or not prefix:
            raise InvalidRequest("url_prefix is required: the URL files are PUT under", field="url_prefix")
        parts = urlsplit(prefix)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise InvalidRequest("url_prefix must be an http:// or https:// URL", field="url_prefix")
        reject_unknown_options(options, ("url_prefix",))

    @staticmethod
    def upload_url(url_prefix: str, key: str) -> str:
        """`<url_prefix>/<key>`, keeping any query string of the prefix on the end."""
        parts = urlsplit(url_prefix)
        path = parts.path.rstrip("/") + "/" + quote(key, safe="/@:+=,;-._~")
        return urlunsplit(parts._replace(path=path, fragment=""))

    async def upload(
        self,
        path: Path,
        *,
        key: str,
        content_type: str,
        options: Mapping[str, Any],
        credentials: Sequence[Credential] = (),
    ) -> UploadedFile:
        target = self.upload_url(str(options["url_prefix"]), key)
        bare_url, plan, secrets = self._plan(target, credentials)
        shown = redact_url(target)
        size_bytes = await file_size(path)
        headers = {"Content-Type": content_type, "Content-Length": str(size_bytes)}
        try:
            # A streamed body cannot be replayed, so a redirect is reported rather than followed.
            response = await self._client.put(
                bare_url,
                content=read_chunks(path),
                headers=headers,
                extensions={_PLAN_KEY: plan},
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            detail = describe_error(exc, secrets)
            raise StorageError(f"PUT {shown} failed: {detail}", provider=self.name) from None
        if response.status_code >= 300:
            raise StorageError(
                f"PUT {shown} answered {response.status_code} {response.reason_phrase}", provider=self.name
            )
        logger.debug("uploaded %d bytes to %s", size_bytes, shown)
        return UploadedFile(url=strip_secrets(target), size_bytes=size_bytes)

    async def aclose(self) -> None:
        await self._client.aclose()
