"""HTTP client for one ComfyUI: queue, history, interrupt, object_info, models, inputs, outputs. One httpx client, on
aiohttp's connections (`transport.py`); its small JSON calls and output downloads go straight on that aiohttp
session (an injected transport, as tests give, takes every call through httpx).

Maps transport failures and 5xx to ComfyUnavailable, unreadable answers to ComfyProtocolError, and graph
validation failures to WorkflowRejected. Knows nothing about jobs, webhooks or our HTTP routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json as json_module
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from comfyui_api.comfy.transport import ComfyTransport
from comfyui_api.errors import ComfyProtocolError, ComfyUnavailable, WorkflowRejected

logger = logging.getLogger(__name__)

# /system_stats answers in milliseconds; a probe that takes longer than this means "not ready yet".
PROBE_TIMEOUT_S = 5.0
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True)
class QueuedPrompt:
    """ComfyUI's answer to POST /prompt: the id, the queue priority `number`, and (empty) node_errors."""

    prompt_id: str
    number: float
    node_errors: dict[str, Any]


@dataclass(frozen=True)
class ForwardedAnswer:
    """ComfyUI's answer to a request passed on: status and content type, and the body to stream (read it to the end
    or close it: it holds a connection until then)."""

    status_code: int
    content_type: str
    body: AsyncIterator[bytes]


class ComfyClient:
    """Async HTTP access to one ComfyUI. Every call has a timeout (timeout_s per request unless stated)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        self._timeout_s = timeout_s
        # trust_env=False: ComfyUI is a local service; an environment proxy must not sit in between (the aiohttp
        # session under ComfyTransport does not read the environment either).
        transport = transport or ComfyTransport(trust_env=False)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=httpx.Timeout(timeout_s), transport=transport, trust_env=False
        )
        # Small JSON calls skip httpx's client layers on our own transport; another (a test's) takes every call.
        self._direct = transport if isinstance(transport, ComfyTransport) else None

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- plumbing ------------------------------------------------------------------------------------------------

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        """One call; `body` takes httpx's `data` / `files` for a form. ComfyUnavailable when ComfyUI is not there or
        answers 5xx."""
        try:
            if self._direct is None or body:
                response = await self._http.request(method, path, json=json, params=params, **body)
            else:
                content = None if json is None else _json_bytes(json)
                response = await self._direct.exchange(
                    method, self.base_url + path, content=content, params=params, timeout_s=self._timeout_s
                )
        except httpx.TransportError as exc:
            raise self._unavailable(method, path, exc) from exc
        if response.status_code >= 500:
            raise ComfyUnavailable(
                f"ComfyUI answered {method} {path} with {response.status_code}: {_snippet(response.text)}"
            )
        return response

    def _unavailable(self, method: str, path: str, exc: httpx.TransportError) -> ComfyUnavailable:
        if isinstance(exc, httpx.TimeoutException):
            return ComfyUnavailable(f"ComfyUI did not answer {method} {path} within {self._timeout_s:g}s")
        return ComfyUnavailable(f"ComfyUI is unreachable at {self.base_url} ({method} {path}: {exc!r})")

    async def forward(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        content_type: str | None = None,
    ) -> ForwardedAnswer:
        """One request passed on as it is (the `/comfyui` door), its body streamed both ways: the answer's status
        and content type once ComfyUI has sent its headers (the per-request timeout bounds sending the request and
        waiting for them), then its body as it arrives (the timeout applies between chunks). An unreachable or
        silent ComfyUI is a ComfyUnavailable; one that breaks off mid-answer ends the body early (logged)."""
        headers = {"content-type": content_type} if content_type else None
        request = self._http.build_request(method, path, params=params, content=content, headers=headers)
        try:
            async with asyncio.timeout(self._timeout_s):
                response = await self._http.send(request, stream=True)
        except TimeoutError as exc:
            raise ComfyUnavailable(f"ComfyUI did not take {method} {path} within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise self._unavailable(method, path, exc) from exc

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_bytes():
                    yield chunk
            except httpx.TransportError as exc:
                logger.warning("ComfyUI broke off its answer to %s %s: %r", method, path, exc)
            finally:
                await response.aclose()

        content_type_there = response.headers.get("content-type", "application/octet-stream")
        return ForwardedAnswer(response.status_code, content_type_there, body())

    async def upload_image(self, data: bytes, filename: str, *, overwrite: bool = False) -> str:
        """POST /upload/image of `data` into input/ (no subfolder); the name ComfyUI stored it under (ComfyUI picks
        another when the name is taken and `overwrite` is false)."""
        fields = {"type": "input", "overwrite": "true" if overwrite else "false"}
        files = {"image": (filename, data, "application/octet-stream")}
        response = await self._request("POST", "/upload/image", data=fields, files=files)
        return self._stored_name(response)

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ComfyProtocolError(
                f"ComfyUI answered {what} with unreadable JSON (status {response.status_code}): "
                f"{_snippet(response.text)}"
            ) from exc

    def _expect_ok(self, response: httpx.Response, what: str) -> None:
        if response.status_code != 200:
            raise ComfyProtocolError(f"ComfyUI answered {what} with {response.status_code}: {_snippet(response.text)}")

    async def _get_json(self, path: str, expected: type, what: str | None = None) -> Any:
        response = await self._request("GET", path)
        self._expect_ok(response, what or f"GET {path}")
        body = self._json(response, what or f"GET {path}")
        if not isinstance(body, expected):
            raise ComfyProtocolError(f"ComfyUI answered {what or 'GET ' + path} with a {type(body).__name__}")
        return body

    async def _post(self, path: str, body: Mapping[str, Any]) -> None:
        response = await self._request("POST", path, json=body)
        self._expect_ok(response, f"POST {path}")

    # -- prompts ---------------------------------------------------------------------------------------------------

    async def queue_prompt(
        self,
        graph: Mapping[str, Any],
        *,
        prompt_id: str,
        client_id: str | None,
        front: bool = False,
        extra_data: Mapping[str, Any] | None = None,
    ) -> QueuedPrompt:
        """POST /prompt. Raises WorkflowRejected when ComfyUI refuses the graph or accepts only part of it."""
        body: dict[str, Any] = {"prompt": graph, "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        if front:
            body["front"] = True
        if extra_data:
            body["extra_data"] = dict(extra_data)
        response = await self._request("POST", "/prompt", json=body)
        if response.status_code == 400:
            raise _rejection(response)
        self._expect_ok(response, "POST /prompt")
        answer = self._json(response, "POST /prompt")
        if not isinstance(answer, Mapping) or not isinstance(answer.get("prompt_id"), str):
            raise ComfyProtocolError(f"ComfyUI answered POST /prompt without a prompt_id: {_snippet(response.text)}")
        node_errors = answer.get("node_errors") or {}
        queued_id = answer["prompt_id"]
        if node_errors:
            await self._withdraw(queued_id)
            raise WorkflowRejected(
                "ComfyUI accepted only part of the workflow; these nodes failed validation: "
                + _describe_node_errors(node_errors),
                comfy_error={
                    "type": "prompt_outputs_failed_validation",
                    "message": "Some outputs failed validation",
                    "details": "",
                    "extra_info": {},
                },
                node_errors=dict(node_errors),
            )
        if queued_id != prompt_id:
            # ComfyUI before prompt_id support makes its own id; frames will carry that one, not ours.
            logger.warning("ComfyUI queued prompt %s under its own id %s", prompt_id, queued_id)
        number = answer.get("number")
        return QueuedPrompt(queued_id, float(number) if isinstance(number, int | float) else 0.0, {})

    async def _withdraw(self, prompt_id: str) -> None:
        """Take a partially accepted prompt back: drop it from the queue, interrupt it if it already started."""
        try:
            await self.delete_from_queue([prompt_id])
            queue = await self.get_queue()
            if any(_item_id(item) == prompt_id for item in queue.get("queue_running", [])):
                await self.interrupt(prompt_id)
        except (ComfyUnavailable, ComfyProtocolError) as exc:
            logger.warning("could not withdraw partially accepted prompt %s: %s", prompt_id, exc)

    async def get_history(self, prompt_id: str) -> dict[str, Any] | None:
        """The history entry of one prompt, or None while it is pending, running or unknown."""
        body = await self._get_json(f"/history/{quote(prompt_id, safe='')}", dict)
        entry = body.get(prompt_id)
        return entry if isinstance(entry, dict) else None

    async def get_queue(self) -> dict[str, Any]:
        """{"queue_running": [...], "queue_pending": [...]}; pending is heap-ordered, not execution-ordered."""
        body = await self._get_json("/queue", dict)
        return {
            "queue_running": list(body.get("queue_running") or []),
            "queue_pending": list(body.get("queue_pending") or []),
        }

    async def queue_position(self, prompt_id: str) -> int | None:
        """How many prompts run before this one: 0 when running or next; None when not queued."""
        queue = await self.get_queue()
        running = queue["queue_running"]
        if any(_item_id(item) == prompt_id for item in running):
            return 0
        pending = sorted(queue["queue_pending"], key=_item_number)
        for index, item in enumerate(pending):
            if _item_id(item) == prompt_id:
                return len(running) + index
        return None

    async def queue_remaining(self, timeout_s: float) -> int:
        """GET /prompt's `exec_info.queue_remaining`: prompts queued or running. ComfyUnavailable when ComfyUI does
        not answer within `timeout_s`."""
        try:
            response = await self._http.get("/prompt", timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise ComfyUnavailable(f"ComfyUI did not answer GET /prompt within {timeout_s:g}s ({exc!r})") from exc
        self._expect_ok(response, "GET /prompt")
        body = self._json(response, "GET /prompt")
        info = body.get("exec_info") if isinstance(body, Mapping) else None
        remaining = info.get("queue_remaining") if isinstance(info, Mapping) else None
        return int(remaining) if isinstance(remaining, int) else 0

    async def delete_from_queue(self, prompt_ids: Sequence[str]) -> None:
        """Remove pending prompts; unknown and running ids are ignored by ComfyUI."""
        await self._post("/queue", {"delete": list(prompt_ids)})

    async def interrupt(self, prompt_id: str | None = None) -> None:
        """Interrupt the running prompt; with prompt_id, only if that one is running."""
        await self._post("/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    async def delete_history(self, prompt_ids: Sequence[str]) -> None:
        await self._post("/history", {"delete": list(prompt_ids)})

    async def cancel_prompt(self, prompt_id: str) -> bool:
        """POST /api/jobs/{id}/cancel (ComfyUI >= ~0.26): dequeues a pending prompt or interrupts a running one in
        one call. True when ComfyUI says it cancelled something; False when the prompt had already ended."""
        path = f"/api/jobs/{quote(prompt_id, safe='')}/cancel"
        response = await self._request("POST", path, json={})
        self._expect_ok(response, f"POST {path}")
        body = self._json(response, f"POST {path}")
        return isinstance(body, Mapping) and body.get("cancelled") is True

    async def has_jobs_cancel(self, probe_id: str) -> bool:
        """Whether POST /api/jobs/{id}/cancel exists: asked for an id nobody uses, it answers {"cancelled": false};
        a ComfyUI without it answers 404 or 405."""
        response = await self._request("POST", f"/api/jobs/{quote(probe_id, safe='')}/cancel", json={})
        if response.status_code != 200:
            return False
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, Mapping) and "cancelled" in body

    # -- introspection -------------------------------------------------------------------------------------------

    async def object_info(self, class_type: str | None = None) -> dict[str, Any]:
        """{class_type: info} for every node, or for one ({} when ComfyUI does not know it)."""
        path = "/object_info" if class_type is None else f"/object_info/{quote(class_type, safe='')}"
        return await self._get_json(path, dict)

    async def system_stats(self) -> dict[str, Any]:
        return await self._get_json("/system_stats", dict)

    async def list_models(self, folder: str | None = None) -> list[str]:
        """Model folder names, or the files of one folder ([] for a folder ComfyUI does not know)."""
        if folder is None:
            return [str(name) for name in await self._get_json("/models", list)]
        response = await self._request("GET", f"/models/{quote(folder, safe='')}")
        if response.status_code == 404:
            return []
        self._expect_ok(response, f"GET /models/{folder}")
        body = self._json(response, f"GET /models/{folder}")
        if not isinstance(body, list):
            raise ComfyProtocolError(f"ComfyUI answered GET /models/{folder} with a {type(body).__name__}")
        return [str(name) for name in body]

    async def is_responding(self) -> bool:
        """True when GET /system_stats answers 200 within a short timeout; never raises for transport errors."""
        try:
            response = await self._http.get("/system_stats", timeout=min(self._timeout_s, PROBE_TIMEOUT_S))
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    # -- inputs ----------------------------------------------------------------------------------------------------

    async def upload_input(self, path: Path, subfolder: str, *, timeout_s: float | None = None) -> str:
        """Hand a local file to ComfyUI's input folder; returns the name a loader node must be given.

        POST /upload/image, multipart streamed from disk: `image` (the file, under its own name), `subfolder`,
        `type=input`, `overwrite=true`. ComfyUI stores any file type there, despite the route's name. The answer is
        `<subfolder>/<name>` as ComfyUI reports it stored the file (just `<name>` without a subfolder). ComfyUI has
        no route to delete an input, so the file stays in its input folder. timeout_s bounds the whole transfer
        (default: the per-request timeout, which also applies to each chunk).
        """
        limit_s = self._timeout_s if timeout_s is None else timeout_s
        fields = {"subfolder": subfolder, "type": "input", "overwrite": "true"}
        try:
            with path.open("rb") as handle:
                async with asyncio.timeout(limit_s):
                    response = await self._http.post(
                        "/upload/image", data=fields, files={"image": (path.name, handle, "application/octet-stream")}
                    )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise ComfyUnavailable(f"ComfyUI did not take input {path.name} within {limit_s:g}s") from exc
        except httpx.TransportError as exc:
            raise ComfyUnavailable(f"lost ComfyUI while uploading input {path.name}: {exc!r}") from exc
        if response.status_code >= 500:
            raise ComfyUnavailable(f"ComfyUI answered POST /upload/image with {response.status_code}")
        return self._stored_name(response)

    def _stored_name(self, response: httpx.Response) -> str:
        """POST /upload/image's answer: `<subfolder>/<name>` as ComfyUI stored the file (`<name>` at the root)."""
        self._expect_ok(response, "POST /upload/image")
        body = self._json(response, "POST /upload/image")
        name = body.get("name") if isinstance(body, Mapping) else None
        stored_in = body.get("subfolder", "") if isinstance(body, Mapping) else None
        if not isinstance(name, str) or not name or not isinstance(stored_in, str):
            raise ComfyProtocolError(f"ComfyUI answered POST /upload/image without a name: {_snippet(response.text)}")
        return f"{stored_in}/{name}" if stored_in else name

    # -- outputs ---------------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _get_stream(
        self, path: str, params: Mapping[str, str]
    ) -> AsyncIterator[tuple[int, AsyncIterator[bytes]]]:
        """GET `path`: its status and its body in chunks, read as they are iterated; failures raised as httpx's."""
        if self._direct is not None:
            url = self.base_url + path
            async with self._direct.download(
                url, params=params, timeout_s=self._timeout_s, chunk_bytes=DOWNLOAD_CHUNK_BYTES
            ) as answer:
                yield answer
            return
        async with self._http.stream("GET", path, params=params) as response:
            yield response.status_code, response.aiter_bytes(DOWNLOAD_CHUNK_BYTES)

    async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int:
        """Stream GET /view into `dest` in chunks; returns its size in bytes. A partial file is removed on error.

        The per-request timeout applies between chunks, not to the whole transfer.
        """
        params = {"filename": filename, "subfolder": subfolder, "type": folder_type}
        size_bytes = 0
        created = False
        try:
            async with self._get_stream("/view", params) as (status, chunks):
                if status != 200:
                    error = ComfyUnavailable if status >= 500 else ComfyProtocolError
                    raise error(
                        f"ComfyUI could not serve output {subfolder + '/' if subfolder else ''}{filename} "
                        f"({folder_type}): status {status}"
                    )
                with dest.open("wb") as sink:
                    created = True
                    async for chunk in chunks:
                        sink.write(chunk)
                        size_bytes += len(chunk)
        except BaseException as exc:
            if created:
                _remove(dest)
            if isinstance(exc, httpx.TimeoutException):
                raise ComfyUnavailable(f"ComfyUI stalled for {self._timeout_s:g}s sending {filename}") from exc
            if isinstance(exc, httpx.TransportError):
                raise ComfyUnavailable(f"lost ComfyUI while downloading {filename}: {exc!r}") from exc
            raise
        return size_bytes


def _json_bytes(body: Any) -> bytes:
    """A request body as httpx encodes `json=` (compact, UTF-8, no NaN)."""
    return json_module.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _snippet(text: str, limit: int = 300) -> str:
    text = text.strip()
    return (text[:limit] + "...") if len(text) > limit else (text or "<empty body>")


def _item_id(item: Any) -> str | None:
    if isinstance(item, list | tuple) and len(item) > 1 and isinstance(item[1], str):
        return item[1]
    return None


def _item_number(item: Any) -> float:
    if isinstance(item, list | tuple) and item and isinstance(item[0], int | float):
        return float(item[0])
    return float("inf")


def _describe_node_errors(node_errors: Mapping[str, Any], limit: int = 3) -> str:
    parts = []
    for node_id, entry in list(node_errors.items())[:limit]:
        entry = entry if isinstance(entry, Mapping) else {}
        errors = entry.get("errors") if isinstance(entry.get("errors"), list) else []
        first = errors[0] if errors and isinstance(errors[0], Mapping) else {}
        text = str(first.get("message", "invalid"))
        if first.get("details"):
            text += f" ({first['details']})"
        parts.append(f"node {node_id} ({entry.get('class_type', '?')}): {text}")
    if len(node_errors) > limit:
        parts.append(f"and {len(node_errors) - limit} more")
    return "; ".join(parts)


def _rejection(response: httpx.Response) -> WorkflowRejected:
    """The WorkflowRejected for a 400 from POST /prompt, keeping ComfyUI's `error` and `node_errors`."""
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, Mapping) else {}
    error = body.get("error")
    if isinstance(error, str):
        error = {"type": "invalid_prompt", "message": error, "details": "", "extra_info": {}}
    comfy_error: dict[str, Any] = dict(error) if isinstance(error, Mapping) else {}
    node_errors = body.get("node_errors")
    node_errors = dict(node_errors) if isinstance(node_errors, Mapping) else {}
    message = str(comfy_error.get("message") or "ComfyUI rejected the workflow")
    if comfy_error.get("details"):
        message += f": {comfy_error['details']}"
    if node_errors:
        message += " - " + _describe_node_errors(node_errors)
    return WorkflowRejected(message, comfy_error=comfy_error, node_errors=node_errors)
