"""Following one queued prompt to its end: turns ComfyUI's frames into job events and decides completion from the
terminal frame, or from GET /history whenever the stream dropped or went quiet.

Every wait is bounded (idle timeout per frame; the caller bounds the whole job). Knows nothing about HTTP routes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from comfyui_api.comfy import messages as msg
from comfyui_api.errors import ComfyApiError, ComfyUnavailable, ExecutionFailed, JobCancelled
from comfyui_api.jobs.model import (
    EventSink,
    JobStarted,
    NodeExecuting,
    NodesCached,
    NodeStates,
    PreviewProduced,
    ProgressUpdated,
)
from comfyui_api.jobs.progress import ProgressTracker

log = logging.getLogger(__name__)

_HISTORY_POLL_S = 1.0  # while the stream is down, how often /history is asked whether the prompt ended


class PromptHistorySource(Protocol):
    async def get_history(self, prompt_id: str) -> dict[str, Any] | None: ...

    async def queue_position(self, prompt_id: str) -> int | None: ...


class MessageSource(Protocol):
    async def get(self, timeout_s: float) -> msg.ComfyMessage: ...


@dataclass
class PromptOutcome:
    """What a successfully finished prompt produced, and when it ran (epoch ms, ComfyUI's clock for start/end)."""

    outputs: dict[str, Any]
    execution_start_ms: float | None = None
    execution_end_ms: float | None = None
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)
    from_history: bool = False


def _now_ms() -> float:
    return time.time() * 1000.0


def execution_failure(error: msg.ExecutionError) -> ExecutionFailed:
    return ExecutionFailed(
        error.exception_message or f"{error.exception_type or 'an exception'} in node {error.node_id}",
        node_id=error.node_id,
        node_type=error.node_type,
        exception_type=error.exception_type,
        traceback=list(error.traceback),
    )


def interruption(job_id: str, interrupted: msg.ExecutionInterrupted) -> JobCancelled:
    where = f" at node {interrupted.node_id} ({interrupted.node_type})" if interrupted.node_id else ""
    return JobCancelled(f"job {job_id} was interrupted{where}")


def _history_messages(entry: Mapping[str, Any]) -> list[msg.ComfyMessage]:
    status = entry.get("status")
    raw = status.get("messages") if isinstance(status, Mapping) else None
    parsed: list[msg.ComfyMessage] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Sequence) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], Mapping):
            parsed.append(msg.parse_message(item[0], item[1]))
    return parsed


def outcome_from_history(job_id: str, entry: Mapping[str, Any]) -> PromptOutcome:
    """A history entry -> the outcome, or the failure it records (ExecutionFailed / JobCancelled)."""
    history_messages = _history_messages(entry)
    for message in history_messages:
        if isinstance(message, msg.ExecutionError):
            raise execution_failure(message)
        if isinstance(message, msg.ExecutionInterrupted):
            raise interruption(job_id, message)
    status = entry.get("status")
    status_str = status.get("status_str") if isinstance(status, Mapping) else None
    if status_str not in (None, "success"):
        raise ExecutionFailed(
            f"ComfyUI reported status {status_str!r}", node_id=None, node_type=None, exception_type=None
        )
    outputs = entry.get("outputs")
    outcome = PromptOutcome(dict(outputs) if isinstance(outputs, Mapping) else {}, from_history=True)
    for message in history_messages:
        if isinstance(message, msg.ExecutionStart):
            outcome.execution_start_ms = message.timestamp_ms
        elif isinstance(message, msg.ExecutionSuccess):
            outcome.execution_end_ms = message.timestamp_ms
    return outcome


class PromptWatch:
    """Consumes one prompt's subscription until the prompt ends; emits job events (named by the job id) on the way.
    The job id and ComfyUI's prompt_id are different values: see `jobs.registry.JobRegistry.new_prompt`."""

    def __init__(
        self,
        job_id: str,
        *,
        prompt_id: str,
        messages: MessageSource,
        history: PromptHistorySource,
        graph: Mapping[str, Any],
        sink: EventSink,
        idle_timeout_s: float,
        on_started: Callable[[], None] = lambda: None,
        on_output: Callable[[str, Mapping[str, Any]], None] | None = None,
        seen_outputs: dict[str, Any] | None = None,
    ):
        self._job_id = job_id  # ours: named in events and errors
        self._prompt_id = prompt_id  # ComfyUI's: asked of /history and /queue
        self._messages = messages
        self._history = history
        self._graph = graph
        self._sink = sink
        self._idle_timeout_s = idle_timeout_s
        self._on_started = on_started
        self._on_output = on_output  # a node reported its output (`executed`)
        # Every node's reported output, kept up to date for the caller (what a failed job must clean up).
        self._seen_outputs = seen_outputs if seen_outputs is not None else {}
        self._progress = ProgressTracker(graph)
        self._outcome = PromptOutcome(outputs={})
        self._current_node: str | None = None
        self._stream_down = False
        self._frames_missed = False
        self._succeeded = False

    @property
    def outputs_seen(self) -> dict[str, Any]:
        """Outputs of the nodes that reported `executed` so far (also when the prompt then failed)."""
        return dict(self._outcome.outputs)

    async def wait(self) -> PromptOutcome:
        """Until the prompt ends: its outcome, or ExecutionFailed / JobCancelled / ComfyUnavailable."""
        while True:
            wait_s = min(_HISTORY_POLL_S, self._idle_timeout_s) if self._stream_down else self._idle_timeout_s
            try:
                message = await self._messages.get(wait_s)
            except TimeoutError:
                outcome = await self._check_history()
            else:
                outcome = await self._handle(message)
            if outcome is not None:
                return outcome

    async def _handle(self, message: msg.ComfyMessage) -> PromptOutcome | None:
        if isinstance(message, msg.ComfyStalled):
            raise ComfyUnavailable(f"ComfyUI stalled while job {self._job_id} was active: {message.reason}")
        if isinstance(message, msg.ComfyExited):
            raise ComfyUnavailable(f"ComfyUI exited (code {message.returncode}) while job {self._job_id} was active")
        if isinstance(message, msg.StreamReconnected):
            self._stream_down = False
            return await self._check_history()
        if isinstance(message, msg.StreamDisconnected):
            self._stream_down = not isinstance(message, msg.StreamIdle)
            self._frames_missed = True
            return await self._check_history()
        if isinstance(message, msg.ExecutionError):
            raise execution_failure(message)
        if isinstance(message, msg.ExecutionInterrupted):
            raise interruption(self._job_id, message)
        if isinstance(message, msg.ExecutionSuccess):
            self._outcome.execution_end_ms = message.timestamp_ms
            self._succeeded = True
            return None if self._frames_missed else await self._finish()
        if isinstance(message, msg.Executing) and message.node is None:
            return await self._finish()
        self._track(message)
        return None

    def _track(self, message: msg.ComfyMessage) -> None:
        if isinstance(message, msg.ExecutionStart):
            self._outcome.execution_start_ms = message.timestamp_ms
            self._on_started()
            self._sink(JobStarted(self._job_id))
        elif isinstance(message, msg.ExecutionCached):
            self._progress.cached(message.nodes)
            if message.nodes:
                self._sink(NodesCached(self._job_id, tuple(message.nodes)))
        elif isinstance(message, msg.ProgressState):
            self._sink(NodeStates(self._job_id, dict(message.nodes)))
        elif isinstance(message, msg.Executing) and message.node is not None:
            self._node_started(message.node)
        elif isinstance(message, msg.Progress):
            percent = self._progress.step(message.node, message.value, message.max)
            self._sink(ProgressUpdated(self._job_id, message.node, message.value, message.max, percent))
        elif isinstance(message, msg.Executed) and message.node is not None:
            self._outcome.outputs[message.node] = dict(message.output)
            self._seen_outputs[message.node] = dict(message.output)
            if self._on_output is not None:
                self._on_output(message.node, message.output)
        elif isinstance(message, msg.Preview):
            self._sink(PreviewProduced(self._job_id, message.node_id, message.content_type, message.data))

    def _node_started(self, node_id: str) -> None:
        self._close_node_timing()
        self._current_node = node_id
        self._outcome.nodes[node_id] = {"start": _now_ms(), "duration": 0.0}
        node = self._graph.get(node_id)
        class_type = node.get("class_type") if isinstance(node, Mapping) else None
        self._sink(NodeExecuting(self._job_id, node_id, class_type if isinstance(class_type, str) else None))
        percent = self._progress.executing(node_id)
        self._sink(ProgressUpdated(self._job_id, node_id, 0.0, 1.0, percent, reported=False))

    def _finished_progress(self) -> None:
        """100%, once: a progress bar reaches its end before the job's outputs are collected."""
        if self._progress.percent < 100.0:
            self._sink(ProgressUpdated(self._job_id, None, 1.0, 1.0, self._progress.finished(), reported=False))

    def _close_node_timing(self) -> None:
        if self._current_node is not None:
            timing = self._outcome.nodes[self._current_node]
            timing["duration"] = round(_now_ms() - timing["start"], 3)
        self._current_node = None

    async def _finish(self) -> PromptOutcome:
        self._close_node_timing()
        self._finished_progress()
        if self._frames_missed:
            entry = await self._history_entry()
            if entry is not None:
                from_history = outcome_from_history(self._job_id, entry)
                self._outcome.outputs = from_history.outputs
                self._outcome.from_history = True
        return self._outcome

    async def _history_entry(self) -> dict[str, Any] | None:
        try:
            return await self._history.get_history(self._prompt_id)
        except ComfyApiError as exc:
            log.warning("job %s: could not read ComfyUI's history: %s", self._job_id, exc)
            return None

    async def _check_history(self) -> PromptOutcome | None:
        """Did the prompt end while we were not hearing about it? Queue first, then history: the reverse order
        could see neither while the prompt moves from one to the other."""
        try:
            position = await self._history.queue_position(self._prompt_id)
        except ComfyApiError as exc:
            log.warning("job %s: could not read ComfyUI's queue: %s", self._job_id, exc)
            return None
        entry = await self._history_entry()
        if entry is None:
            if position is None and not self._stream_down and not self._succeeded:
                raise ComfyUnavailable(f"ComfyUI no longer knows job {self._job_id} (was it restarted?)")
            return None
        self._close_node_timing()
        outcome = outcome_from_history(self._job_id, entry)
        outcome.nodes = self._outcome.nodes
        outcome.execution_start_ms = outcome.execution_start_ms or self._outcome.execution_start_ms
        self._finished_progress()
        return outcome
