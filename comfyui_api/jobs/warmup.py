"""Warmup: runs one configured graph (WARMUP_PROMPT_FILE or WARMUP_PROMPT_URL) after ComfyUI becomes ready, and
again after every restart, so the first real job does not pay for loading models. Outputs are discarded.

Owns the warmup graph, its state (phase, last error, duration) and the exit decision; never exits the process and
never raises from `run`: a failure is logged and kept as the `failed` phase.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from comfyui_api.errors import ComfyApiError
from comfyui_api.jobs.model import EventSink, JobEvent, JobRequest, JobResult
from comfyui_api.settings import WarmupSettings

log = logging.getLogger(__name__)

WarmupPhase = Literal["pending", "running", "done", "failed", "disabled"]

MAX_GRAPH_BYTES = 16 * 1024 * 1024
RUN_BACKSTOP_S = 30.0
"""Extra time past WARMUP_TIMEOUT_S before `run` stops waiting on a runner that failed to enforce timeout_s."""

CHECKPOINT_FIELD = "ckpt_name"


class WarmupRunner(Protocol):
    async def run(self, request: JobRequest, sink: EventSink) -> JobResult: ...


class WarmupError(Exception):
    """The warmup graph could not be read, fetched or parsed."""


@dataclass(frozen=True)
class WarmupState:
    phase: WarmupPhase
    error: str | None  # the last failure, until a run succeeds
    duration_s: float | None  # of the last run
    run_count: int
    checkpoint_name: str | None


class Warmup:
    """One warmup graph and the outcome of running it.

    Call `await load()` once at start-up (it reads the graph, which gives `checkpoint_name`), then
    `await run(runner)` each time ComfyUI becomes ready. `is_ready` is what /ready waits for; `exit_required` tells
    the caller to exit the process (WARMUP_REQUIRED and the last attempt failed).
    """

    def __init__(
        self,
        settings: WarmupSettings,
        *,
        fetch_timeout_s: float = 30.0,
        run_backstop_s: float = RUN_BACKSTOP_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._settings = settings
        self._fetch_timeout_s = fetch_timeout_s
        self._run_backstop_s = run_backstop_s
        self._transport = transport
        self._graph: dict[str, Any] | None = None
        self._phase: WarmupPhase = "pending" if self.enabled else "disabled"
        self._error: str | None = None
        self._duration_s: float | None = None
        self._run_count = 0
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._settings.prompt_file is not None or self._settings.prompt_url is not None

    @property
    def phase(self) -> WarmupPhase:
        return self._phase

    @property
    def is_ready(self) -> bool:
        return self._phase in ("done", "disabled")

    @property
    def exit_required(self) -> bool:
        return self._settings.required and self._phase == "failed"

    @property
    def checkpoint_name(self) -> str | None:
        """The first `ckpt_name` set in the warmup graph (None until loaded, or when it sets none)."""
        return first_checkpoint(self._graph) if self._graph is not None else None

    def state(self) -> WarmupState:
        return WarmupState(self._phase, self._error, self._duration_s, self._run_count, self.checkpoint_name)

    def reset(self) -> None:
        """ComfyUI went away: a finished warmup no longer counts until the next `run`."""
        if self._phase in ("done", "failed"):
            self._phase = "pending"

    async def load(self) -> dict[str, Any] | None:
        """Read the warmup graph once. On failure: record it (phase `failed`), log it, return None."""
        if not self.enabled:
            return None
        if self._graph is None:
            try:
                self._graph = await self._read_graph()
            except WarmupError as exc:
                self._fail(str(exc))
        return self._graph

    async def run(self, runner: WarmupRunner) -> WarmupState:
        """Run the warmup graph once through `runner` (retrying the load if it failed before)."""
        if not self.enabled:
            return self.state()
        async with self._lock:
            self._phase = "running"
            self._run_count += 1
            started = time.monotonic()
            try:
                await self._run_once(runner)
            except Exception as exc:  # a task boundary: the failure is recorded, and the app keeps serving
                self._fail(_describe(exc))
            else:
                self._phase, self._error = "done", None
                log.info("warmup finished in %.1f s", time.monotonic() - started)
            finally:
                self._duration_s = time.monotonic() - started
                if self._phase == "running":  # cancelled: it will be run again
                    self._phase = "pending"
        return self.state()

    async def _run_once(self, runner: WarmupRunner) -> None:
        graph = self._graph if self._graph is not None else await self._read_graph()
        self._graph = graph
        request = JobRequest(
            id=f"warmup-{uuid.uuid4().hex}",
            graph=graph,
            timeout_s=self._settings.timeout_s,
            discard_outputs=True,
            source="warmup",
        )
        log.info("warmup started (job %s)", request.id)
        try:
            async with asyncio.timeout(self._settings.timeout_s + self._run_backstop_s):
                await runner.run(request, _discard)
        except TimeoutError:
            raise WarmupError(f"did not finish within WARMUP_TIMEOUT_S={self._settings.timeout_s:g} s") from None

    def _fail(self, error: str) -> None:
        self._phase, self._error = "failed", error
        consequence = "WARMUP_REQUIRED is set: the server should exit" if self._settings.required else "not ready"
        log.error("warmup failed: %s (%s)", error, consequence)

    async def _read_graph(self) -> dict[str, Any]:
        if self._settings.prompt_file is not None:
            path = self._settings.prompt_file
            source = f"WARMUP_PROMPT_FILE {path}"
            data = await asyncio.to_thread(_read_file, path, source)
        else:
            url = self._settings.prompt_url
            assert url is not None
            source = f"WARMUP_PROMPT_URL {_redacted(url)}"
            data = await self._fetch(url, source)
        return parse_graph(data, source)

    async def _fetch(self, url: str, source: str) -> bytes:
        chunks: list[bytes] = []
        received = 0
        try:
            async with (
                asyncio.timeout(self._fetch_timeout_s),
                httpx.AsyncClient(
                    timeout=self._fetch_timeout_s, transport=self._transport, follow_redirects=True
                ) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code != 200:
                    raise WarmupError(f"{source}: answered HTTP {response.status_code}")
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > MAX_GRAPH_BYTES:
                        raise WarmupError(f"{source}: more than {MAX_GRAPH_BYTES} bytes; is it a graph?")
                    chunks.append(chunk)
        except TimeoutError:
            raise WarmupError(f"{source}: no complete answer within {self._fetch_timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise WarmupError(f"{source}: {type(exc).__name__}: {exc}") from None
        return b"".join(chunks)


def _read_file(path: Path, source: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_GRAPH_BYTES + 1)
    except OSError as exc:
        raise WarmupError(f"{source}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_GRAPH_BYTES:
        raise WarmupError(f"{source}: more than {MAX_GRAPH_BYTES} bytes; is it a graph?")
    return data


def parse_graph(data: bytes, source: str) -> dict[str, Any]:
    """An API-format graph, given bare or as a POST /prompt body `{"prompt": graph, ...}`."""
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WarmupError(f"{source}: is not valid JSON: {exc}") from None
    if isinstance(document, dict) and isinstance(document.get("prompt"), dict):
        document = document["prompt"]
    if isinstance(document, dict) and isinstance(document.get("nodes"), list) and "links" in document:
        raise WarmupError(f"{source}: is a UI-format workflow; export it from ComfyUI with 'Export (API)'")
    if not isinstance(document, dict) or not document:
        raise WarmupError(f"{source}: must be an API-format graph (a JSON object of nodes)")
    for node_id, node in document.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise WarmupError(f"{source}: node {node_id} has no class_type")
    return document


def first_checkpoint(graph: Mapping[str, Any]) -> str | None:
    """The `ckpt_name` of the first node (in graph order) that sets one to a literal string."""
    for node in graph.values():
        inputs = node.get("inputs") if isinstance(node, Mapping) else None
        value = inputs.get(CHECKPOINT_FIELD) if isinstance(inputs, Mapping) else None
        if isinstance(value, str) and value:
            return value
    return None


def _discard(_: JobEvent) -> None:
    """Warmup progress interests nobody; the outcome is the runner's return value or exception."""


def _describe(exc: Exception) -> str:
    if isinstance(exc, WarmupError):
        return str(exc)
    if isinstance(exc, ComfyApiError):
        return f"{exc.kind}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _redacted(url: str) -> str:
    """The URL without query string or user info, which may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
