"""What the client returns: a job's record (`Job`), its outputs, a finished run (`Result`) and one stream event."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Output:
    """One output file. `data` holds its bytes when the server returned them inline; `url` is where it can be
    fetched otherwise (a `/jobs/<id>/outputs/<i>` path or the storage URL of an uploaded output)."""

    node_id: str
    kind: str  # image | animated | video | audio | latent | file
    filename: str
    content_type: str
    size_bytes: int
    url: str | None = None
    data: bytes | None = None
    error: str | None = None  # why its upload failed, when it did


@dataclass(frozen=True)
class Job:
    """A job's record (`GET /jobs/{id}`). `status`: queued | running | completed | failed | cancelled."""

    id: str
    status: str
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    queue_position: int | None = None
    percent: float = 0.0
    node: str | None = None
    outputs: tuple[Output, ...] = ()
    texts: tuple[str, ...] = ()
    error: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Job:
        progress = record.get("progress") or {}
        return cls(
            id=str(record["id"]),
            status=str(record.get("status", "")),
            created_at=record.get("created_at"),
            started_at=record.get("started_at"),
            finished_at=record.get("finished_at"),
            queue_position=record.get("queue_position"),
            percent=float(progress.get("percent") or 0.0),
            node=progress.get("node"),
            outputs=tuple(_output(item) for item in record.get("outputs") or ()),
            texts=tuple(record.get("texts") or ()),
            error=record.get("error"),
            metadata=record.get("metadata") or {},
            raw=record,
        )


@dataclass(frozen=True)
class JobPage:
    jobs: tuple[Job, ...]
    next_cursor: str | None


@dataclass(frozen=True)
class Result:
    """A finished job as the synchronous `POST /prompt` answer (or the `complete` event) has it."""

    id: str
    outputs: tuple[Output, ...]
    texts: tuple[str, ...] = ()
    stats: Mapping[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Result:
        images: Sequence[Any] = body.get("images") or ()
        described: Sequence[Mapping[str, Any]] = body.get("outputs") or ()
        outputs = []
        for index, value in enumerate(images):
            meta = described[index] if index < len(described) else {}
            inline = isinstance(value, str) and not value.startswith(("http://", "https://", "s3://"))
            outputs.append(
                _output(
                    {**meta, "url": None if inline else value},
                    data=base64.b64decode(value) if inline else None,
                    fallback_name=(body.get("filenames") or [f"output-{index}"] * (index + 1))[index],
                )
            )
        return cls(
            id=str(body.get("id", "")),
            outputs=tuple(outputs),
            texts=tuple(body.get("texts") or ()),
            stats=body.get("stats") or {},
            raw=body,
        )


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event of a job: `name` (queued, started, executing, progress, preview, output, complete,
    failed), `data` (its JSON) and `id` (for resuming)."""

    name: str
    data: Any
    id: str | None = None

    @property
    def terminal(self) -> bool:
        return self.name in ("complete", "failed")


def _output(item: Mapping[str, Any], *, data: bytes | None = None, fallback_name: str = "output") -> Output:
    return Output(
        node_id=str(item.get("node_id", item.get("node", ""))),
        kind=str(item.get("kind", "file")),
        filename=str(item.get("filename") or fallback_name),
        content_type=str(item.get("content_type", "application/octet-stream")),
        size_bytes=int(item.get("size_bytes") or (len(data) if data is not None else 0)),
        url=item.get("url"),
        data=data,
        error=item.get("error"),
    )
