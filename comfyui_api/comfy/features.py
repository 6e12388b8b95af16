"""What one running ComfyUI can do, learnt from it rather than predicted from a version number: its version
(`/system_stats`), its output node classes (`/object_info`'s `output_node`) and whether it has the atomic jobs
cancel route (`POST /api/jobs/{id}/cancel`, ComfyUI >= ~0.26).

Detected once per ComfyUI start. Knows nothing about jobs or our routes; a failed probe leaves a safe default.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from comfyui_api.comfy.graph import KNOWN_OUTPUT_CLASSES
from comfyui_api.errors import ComfyApiError

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """What detection needs of `comfy.client.ComfyClient`."""

    async def system_stats(self) -> dict[str, Any]: ...

    async def object_info(self, class_type: str | None = None) -> dict[str, Any]: ...

    async def has_jobs_cancel(self, probe_id: str) -> bool: ...


@dataclass(frozen=True)
class ComfyFeatures:
    """`version` is ComfyUI's own string ("0.3.64", "0.33.0"), None when it did not say. `output_classes` are the
    node classes it runs as outputs (the built-in list plus whatever its /object_info marks `output_node`)."""

    version: str | None = None
    output_classes: frozenset[str] = field(default=KNOWN_OUTPUT_CLASSES)
    jobs_cancel: bool = False  # POST /api/jobs/{id}/cancel: dequeues or interrupts in one call

    def describe(self) -> str:
        return (
            f"ComfyUI {self.version or 'of unknown version'}: {len(self.output_classes)} output node classes, "
            f"jobs cancel API {'present' if self.jobs_cancel else 'absent'}"
        )


def output_classes_of(object_info: Mapping[str, Any]) -> frozenset[str]:
    """The classes /object_info marks as output nodes, plus the built-in list (custom nodes may come and go)."""
    marked = {
        name for name, info in object_info.items() if isinstance(info, Mapping) and info.get("output_node") is True
    }
    return KNOWN_OUTPUT_CLASSES | frozenset(marked)


async def detect_features(client: FeatureSource) -> ComfyFeatures:
    """Ask a ComfyUI that just became ready what it can do. Never raises for an answer it did not like."""
    version: str | None = None
    output_classes = KNOWN_OUTPUT_CLASSES
    jobs_cancel = False
    try:
        stats = await client.system_stats()
        system = stats.get("system")
        raw_version = system.get("comfyui_version") if isinstance(system, Mapping) else None
        version = str(raw_version) if raw_version is not None else None
    except ComfyApiError as exc:
        log.warning("could not read ComfyUI's version from /system_stats: %s", exc.message)
    try:
        output_classes = output_classes_of(await client.object_info())
    except ComfyApiError as exc:
        log.warning("could not read ComfyUI's output nodes from /object_info: %s", exc.message)
    try:
        # An id ComfyUI cannot know: the route answers {"cancelled": false} where it exists and 404/405 elsewhere.
        jobs_cancel = await client.has_jobs_cancel(str(uuid.uuid4()))
    except ComfyApiError as exc:
        log.warning("could not probe ComfyUI's jobs API: %s", exc.message)
    return ComfyFeatures(version=version, output_classes=output_classes, jobs_cancel=jobs_cancel)
