"""ComfyUI's websocket messages as typed, frozen values, and the parsing of raw frames into them.

Parsing is lenient: unknown fields are ignored, unknown types become `UnknownMessage`, nothing here raises on odd
input. No I/O here; the connection lives in `comfy/events.py`. Nothing here knows about jobs or HTTP routes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Binary event types (ComfyUI protocol.py BinaryEventTypes); 2 never reaches the wire, 3 is progress text.
BINARY_PREVIEW_IMAGE = 1
BINARY_PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {1: "image/jpeg", 2: "image/png"}
_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True)
class ComfyMessage:
    """Base of every message. `raw_type`/`raw_data` keep the frame as ComfyUI sent it (for forwarding)."""

    raw_type: str = field(default="", kw_only=True, repr=False, compare=False)
    raw_data: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        """True for the frames after which ComfyUI sends nothing more about this prompt."""
        return False


@dataclass(frozen=True)
class StatusMessage(ComfyMessage):
    queue_remaining: int | None
    sid: str | None = None


@dataclass(frozen=True)
class FeatureFlags(ComfyMessage):
    flags: Mapping[str, Any]


@dataclass(frozen=True)
class ExecutionStart(ComfyMessage):
    prompt_id: str | None
    timestamp_ms: int | None


@dataclass(frozen=True)
class ExecutionCached(ComfyMessage):
    prompt_id: str | None
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Executing(ComfyMessage):
    """A node is about to run; `node is None` is the terminal frame of a prompt (success, error or interrupt)."""

    prompt_id: str | None
    node: str | None
    display_node: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.node is None


@dataclass(frozen=True)
class Progress(ComfyMessage):
    prompt_id: str | None
    node: str | None
    value: float
    max: float


@dataclass(frozen=True)
class ProgressState(ComfyMessage):
    prompt_id: str | None
    nodes: Mapping[str, Any]


@dataclass(frozen=True)
class Executed(ComfyMessage):
    prompt_id: str | None
    node: str | None
    output: Mapping[str, Any]
    display_node: str | None = None


@dataclass(frozen=True)
class ExecutionSuccess(ComfyMessage):
    prompt_id: str | None
    timestamp_ms: int | None

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True)
class ExecutionError(ComfyMessage):
    prompt_id: str | None
    node_id: str | None
    node_type: str | None
    exception_type: str | None
    exception_message: str
    traceback: tuple[str, ...]
    executed: tuple[str, ...]
    timestamp_ms: int | None

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True)
class ExecutionInterrupted(ComfyMessage):
    prompt_id: str | None
    node_id: str | None
    node_type: str | None
    timestamp_ms: int | None
    executed: tuple[str, ...] = ()

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True)
class Preview(ComfyMessage):
    """A binary image frame: a sampler preview or a SaveImageWebsocket image. Type 1 frames carry no ids."""

    prompt_id: str | None
    node_id: str | None
    content_type: str
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class UnknownMessage(ComfyMessage):
    type: str
    data: Mapping[str, Any]

    @property
    def prompt_id(self) -> str | None:
        value = self.data.get("prompt_id")
        return value if isinstance(value, str) else None


# Stream-level messages: produced by us, delivered to every subscription.


@dataclass(frozen=True)
class StreamDisconnected(ComfyMessage):
    """The websocket is down (or was never up): frames may have been missed; check /history."""

    reason: str
    raw_type: str = field(default="stream_disconnected", kw_only=True, repr=False, compare=False)


@dataclass(frozen=True)
class StreamIdle(StreamDisconnected):
    """No frame for `idle_s` although the socket answers pings: check /history in case a frame was lost.

    A subclass of StreamDisconnected so that code treating "may have missed frames" once handles both.
    """

    reason: str = "idle"
    idle_s: float = 0.0
    raw_type: str = field(default="stream_idle", kw_only=True, repr=False, compare=False)


@dataclass(frozen=True)
class StreamReconnected(ComfyMessage):
    """The websocket is back after a drop; frames sent in between are lost."""

    raw_type: str = field(default="stream_reconnected", kw_only=True, repr=False, compare=False)


@dataclass(frozen=True)
class ComfyExited(ComfyMessage):
    """The ComfyUI process ended: nothing queued or running in it will finish."""

    returncode: int | None
    raw_type: str = field(default="comfy_exited", kw_only=True, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return True


@dataclass(frozen=True)
class ComfyStalled(ComfyMessage):
    """ComfyUI stopped making progress (no frame for `silent_s` with work queued) or stopped answering HTTP: nothing
    queued or running in it can be counted on to finish."""

    silent_s: float
    reason: str
    raw_type: str = field(default="comfy_stalled", kw_only=True, repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return True


STREAM_MESSAGES = (StreamDisconnected, StreamReconnected, ComfyExited, ComfyStalled)


def message_prompt_id(message: ComfyMessage) -> str | None:
    """The prompt a message belongs to, or None for queue-wide and stream-level messages."""
    value = getattr(message, "prompt_id", None)
    return value if isinstance(value, str) else None


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    return None


def _number(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return 0


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else _EMPTY


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return ()
    return tuple(item if isinstance(item, str) else str(item) for item in value)


def _build(kind: str, data: Mapping[str, Any]) -> ComfyMessage:
    raw: dict[str, Any] = {"raw_type": kind, "raw_data": data}
    pid = _str(data.get("prompt_id"))
    if kind == "status":
        exec_info = _mapping(_mapping(data.get("status")).get("exec_info"))
        return StatusMessage(_int(exec_info.get("queue_remaining")), _str(data.get("sid")), **raw)
    if kind == "feature_flags":
        return FeatureFlags(dict(data), **raw)
    if kind == "execution_start":
        return ExecutionStart(pid, _int(data.get("timestamp")), **raw)
    if kind == "execution_cached":
        return ExecutionCached(pid, _strings(data.get("nodes")), **raw)
    if kind == "executing":
        return Executing(pid, _str(data.get("node")), _str(data.get("display_node")), **raw)
    if kind == "progress":
        return Progress(pid, _str(data.get("node")), _number(data.get("value")), _number(data.get("max")), **raw)
    if kind == "progress_state":
        return ProgressState(pid, _mapping(data.get("nodes")), **raw)
    if kind == "executed":
        node = _str(data.get("node"))
        return Executed(pid, node, _mapping(data.get("output")), _str(data.get("display_node")), **raw)
    if kind == "execution_success":
        return ExecutionSuccess(pid, _int(data.get("timestamp")), **raw)
    if kind == "execution_error":
        return ExecutionError(
            prompt_id=pid,
            node_id=_str(data.get("node_id")),
            node_type=_str(data.get("node_type")),
            exception_type=_str(data.get("exception_type")),
            exception_message=_str(data.get("exception_message")) or "",
            traceback=_strings(data.get("traceback")),
            executed=_strings(data.get("executed")),
            timestamp_ms=_int(data.get("timestamp")),
            **raw,
        )
    if kind == "execution_interrupted":
        node_id, node_type = _str(data.get("node_id")), _str(data.get("node_type"))
        return ExecutionInterrupted(
            pid, node_id, node_type, _int(data.get("timestamp")), _strings(data.get("executed")), **raw
        )
    return UnknownMessage(kind, data, **raw)


def parse_message(kind: str, data: Mapping[str, Any]) -> ComfyMessage:
    """Build the typed message for one `{"type": kind, "data": data}` pair (also fits history `messages`)."""
    return _build(kind, data)


def parse_text_frame(text: str | bytes) -> ComfyMessage:
    """One text frame -> its message. Never raises: malformed frames become `UnknownMessage`."""
    try:
        payload = json.loads(text)
    except ValueError:
        return UnknownMessage("", {"text": str(text)[:1000]})
    if not isinstance(payload, Mapping):
        return UnknownMessage("", {"value": payload})
    kind = payload.get("type")
    data = payload.get("data")
    return parse_message(kind if isinstance(kind, str) else "", data if isinstance(data, Mapping) else {})


def parse_binary_frame(frame: bytes) -> Preview | None:
    """A binary frame -> Preview for image frames (types 1 and 4); None for anything else or a truncated frame."""
    if len(frame) < 8:
        return None
    (event_type,) = struct.unpack_from(">I", frame, 0)
    if event_type == BINARY_PREVIEW_IMAGE:
        (image_type,) = struct.unpack_from(">I", frame, 4)
        content_type = _IMAGE_TYPES.get(image_type, "application/octet-stream")
        raw_data = {"image_type": content_type}
        return Preview(None, None, content_type, bytes(frame[8:]), raw_type="preview_image", raw_data=raw_data)
    if event_type == BINARY_PREVIEW_IMAGE_WITH_METADATA:
        (meta_len,) = struct.unpack_from(">I", frame, 4)
        if 8 + meta_len > len(frame):
            return None
        try:
            metadata = json.loads(frame[8 : 8 + meta_len])
        except ValueError:
            metadata = {}
        metadata = metadata if isinstance(metadata, Mapping) else {}
        content_type = _str(metadata.get("image_type")) or "application/octet-stream"
        return Preview(
            _str(metadata.get("prompt_id")),
            _str(metadata.get("node_id")),
            content_type,
            bytes(frame[8 + meta_len :]),
            raw_type="preview_image_with_metadata",
            raw_data=dict(metadata),
        )
    return None
