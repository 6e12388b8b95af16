"""What the job service tells a tracer about a job: one trace per job, with a stage for each step of its life
(`stage_inputs`, `queue`, `execute`, `collect`, `upload`, then `deliver` for its webhook). The service and the
runner speak only to these protocols; without a tracer configured every call lands on NO_TRACER, which does
nothing. The OpenTelemetry implementation is `comfyui_api/telemetry.py`."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol

from comfyui_api.jobs.model import JobRequest


class StageSpan(Protocol):
    def end(self, error: BaseException | None = None) -> None:
        """The stage is over (failed with `error` when given)."""


class JobTrace(Protocol):
    def stage(self, name: str) -> StageSpan:
        """A stage of the job that starts now."""

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        """A fact about the job learnt while it runs (e.g. ComfyUI's prompt id)."""

    def end(self, status: str, error: BaseException | None = None) -> None:
        """The job ended with `status` (completed, failed, cancelled)."""


class JobTracer(Protocol):
    def start_job(self, request: JobRequest) -> JobTrace:
        """A trace for a job that was just admitted."""


class _NoStage:
    def end(self, error: BaseException | None = None) -> None:
        return None


class _NoTrace:
    def stage(self, name: str) -> StageSpan:
        return _NO_STAGE

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        return None

    def end(self, status: str, error: BaseException | None = None) -> None:
        return None


class _NoTracer:
    def start_job(self, request: JobRequest) -> JobTrace:
        return NO_TRACE


_NO_STAGE = _NoStage()
NO_TRACE: JobTrace = _NoTrace()
NO_TRACER: JobTracer = _NoTracer()


class Stages:
    """A job's stages one after another: `enter(name)` ends the current stage and starts the next; leaving the
    `with` block ends the last one, failed with the exception that left it, if any. `annotate` goes to the job."""

    def __init__(self, trace: JobTrace):
        self._trace = trace
        self._current: StageSpan | None = None

    def enter(self, name: str) -> None:
        if self._current is not None:
            self._current.end()
        self._current = self._trace.stage(name)

    def annotate(self, key: str, value: str | int | float | bool) -> None:
        self._trace.annotate(key, value)

    def __enter__(self) -> Stages:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._current is not None:
            self._current.end(error)
            self._current = None
