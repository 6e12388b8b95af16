"""How a job's collected outputs leave: image conversion (`convert_output`, in worker threads), uploads to the
request's target (in parallel, bounded by the storage registry, streamed from disk) and `fallback_to_base64`.

An upload that failed is never reported as a success: the output keeps `error`, and keeps its local file only when
it is to be returned inline. Knows nothing of HTTP or webhooks; `delivery_failure` tells adapters what to report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import UnidentifiedImageError

from comfyui_api.errors import ComfyApiError, StorageError
from comfyui_api.jobs.conversion import convert_output
from comfyui_api.jobs.model import ConvertSpec, JobRequest, JobResult, OutputFile, Stats
from comfyui_api.storage.base import UploadTarget
from comfyui_api.storage.credentials import scrub, secrets_of
from comfyui_api.storage.registry import UPLOAD_REQUEST_KEYS, StorageRegistry

log = logging.getLogger(__name__)

_PARALLEL_CONVERSIONS = 2  # image encoding is CPU-bound: more threads than this only contend for the cores
FALLBACK_NOTE = "upload failed: returned inline as base64 (fallback_to_base64)"


@dataclass(frozen=True)
class DeliveredOutputs:
    outputs: list[OutputFile]
    upload_ms: float | None  # None when nothing was uploaded


def undelivered(outputs: Sequence[OutputFile]) -> list[OutputFile]:
    """Outputs whose upload failed and that are not returned inline either."""
    return [output for output in outputs if output.error is not None and output.url is None and output.path is None]


def delivery_failure(request: JobRequest, result: JobResult) -> StorageError | None:
    """The error to report when some outputs reached neither their upload target nor the answer; else None."""
    failed = undelivered(result.outputs)
    if not failed or request.upload is None:
        return None
    provider = request.upload.provider
    field = UPLOAD_REQUEST_KEYS.get(provider, provider)
    listed = "; ".join(f"{output.filename}: {output.error}" for output in failed)
    return StorageError(
        f"{len(failed)} of {len(result.outputs)} output(s) could not be uploaded: {listed}",
        provider=provider,
        field=field,
        details={"failed": [{"filename": output.filename, "error": output.error} for output in failed]},
    )


def record_upload_time(stats: Stats, upload_ms: float | None) -> None:
    """Move the upload's share of post-processing into `upload_ms` (Salad's `upload_time`)."""
    if upload_ms is None:
        return
    stats.upload_ms = round(upload_ms, 3)
    stats.postprocess_ms = round(max(0.0, stats.postprocess_ms - upload_ms), 3)


def _forget_file(output: OutputFile) -> None:
    if output.path is not None:
        output.path.unlink(missing_ok=True)
        output.path = None


class OutputDelivery:
    """Converts and uploads the outputs of every job; one instance per server."""

    def __init__(self, storage: StorageRegistry | None, *, max_fallback_bytes: int):
        self._storage = storage
        self._max_fallback_bytes = max_fallback_bytes
        self._conversion_slots = asyncio.Semaphore(_PARALLEL_CONVERSIONS)

    async def deliver(self, request: JobRequest, outputs: list[OutputFile]) -> DeliveredOutputs:
        """Convert (when asked), then upload (when a target is set). Per-output failures are recorded on the output;
        nothing here raises for them. Cancellation (the job's timeout) propagates."""
        if request.convert is not None:
            outputs = list(await asyncio.gather(*(self._convert(output, request.convert) for output in outputs)))
        if request.upload is None or self._storage is None:
            return DeliveredOutputs(outputs, None)
        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for output in outputs:
                if output.path is not None:
                    group.create_task(self._upload(self._storage, request, request.upload, output))
        upload_ms = (time.monotonic() - started) * 1000
        self._settle_failures(request, outputs)
        return DeliveredOutputs(outputs, upload_ms)

    async def _convert(self, output: OutputFile, spec: ConvertSpec) -> OutputFile:
        async with self._conversion_slots:
            try:
                converted = await convert_output(output, spec)
            except (OSError, ValueError, UnidentifiedImageError) as exc:
                log.warning("could not convert %s to %s: %s", output.filename, spec.format, exc)
                output.note = f"not converted to {spec.format}: {type(exc).__name__}: {exc}"
                return output
        if converted.path != output.path and output.path is not None:
            output.path.unlink(missing_ok=True)  # the original is not returned; free its disk now
        return converted

    async def _upload(
        self, storage: StorageRegistry, request: JobRequest, target: UploadTarget, output: OutputFile
    ) -> None:
        """One output's upload: a task boundary, so one failure never stops the others."""
        try:
            uploaded = await storage.upload(output, target, request.id, credentials=request.credentials)
        except ComfyApiError as exc:
            output.error = self._scrubbed(request, exc.message)
        except Exception as exc:
            log.exception("job %s: upload of %s crashed", request.id, output.filename)
            output.error = f"internal error during upload: {type(exc).__name__}"
        else:
            output.url = uploaded.url
            return
        log.warning("job %s: upload of %s failed: %s", request.id, output.filename, output.error)

    @staticmethod
    def _scrubbed(request: JobRequest, message: str) -> str:
        assert request.upload is not None
        urls = [value for value in request.upload.options.values() if isinstance(value, str) and "://" in value]
        return scrub(message, secrets_of(request.credentials, urls=urls))

    def _settle_failures(self, request: JobRequest, outputs: list[OutputFile]) -> None:
        """Failed uploads: keep the file for an inline answer while fallback_to_base64 allows, else drop it."""
        inline_bytes = 0
        for output in outputs:
            if output.error is None or output.path is None:
                continue
            if request.fallback_to_base64 and inline_bytes + output.size_bytes <= self._max_fallback_bytes:
                inline_bytes += output.size_bytes
                output.note = FALLBACK_NOTE
                continue
            if request.fallback_to_base64:
                output.note = (
                    f"too large to return inline: the base64 fallback is limited to "
                    f"{self._max_fallback_bytes / 2**20:g} MB per job (MAX_BASE64_FALLBACK_MB)"
                )
            _forget_file(output)
