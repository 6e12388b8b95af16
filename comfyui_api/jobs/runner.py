"""The job runner: one job's life from request to result. stage -> isolate -> subscribe -> queue -> track ->
collect, emitting JobEvents to the caller's sink, bounded by the job's timeout_s.

Talks to ComfyUI only through `comfy/`; never raises HTTP errors (adapters map `comfyui_api.errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from comfyui_api.comfy import graph as comfy_graph
from comfyui_api.comfy.client import ComfyClient
from comfyui_api.comfy.features import ComfyFeatures
from comfyui_api.comfy.subscription import Subscription
from comfyui_api.errors import ComfyApiError, ComfyUnavailable, JobCancelled, JobTimeout, WorkflowRejected
from comfyui_api.jobs.model import (
    Credential,
    EventSink,
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobQueued,
    JobRequest,
    JobResult,
    JobStatus,
    OutputReady,
    Stats,
)
from comfyui_api.jobs.output_delivery import DeliveredOutputs, OutputDelivery, record_upload_time
from comfyui_api.jobs.outputs import OutputCollector, discard
from comfyui_api.jobs.registry import JobEntry, JobRegistry
from comfyui_api.jobs.staging import InputStager
from comfyui_api.jobs.tracing import NO_TRACE, JobTrace, Stages
from comfyui_api.jobs.tracking import PromptOutcome, PromptWatch
from comfyui_api.logs import current_job
from comfyui_api.settings import Settings

log = logging.getLogger(__name__)

RUN_MARKER_INPUT = "comfyui_api_run"
_ABANDON_TIMEOUT_S = 5.0  # removing/interrupting a prompt we gave up on; best effort, must not hold up the error
_ABANDON_POLL_S = 0.25  # how often an interrupted prompt is looked for in ComfyUI's queue until it has left
_PARTIAL_RUN_WAIT_S = 10.0  # how long a withdrawn, partly accepted prompt may take to stop before we clean up


class EventSubscriber(Protocol):
    def subscribe(self, prompt_id: str) -> Subscription: ...


class ModelLease(Protocol):
    def release(self) -> None: ...


class ModelUrlResolver(Protocol):
    """Downloads the models named by URL in loader inputs (`models.loaders.ModelResolver`); the lease keeps them
    on disk until released."""

    async def resolve_model_urls(
        self, graph: Mapping[str, Any], credentials: Sequence[Credential] = ()
    ) -> tuple[dict[str, Any], ModelLease]: ...


class ComfyInstanceLike(Protocol):
    """What the runner needs of `comfy.instance.ComfyInstance`."""

    @property
    def client(self) -> ComfyClient: ...

    @property
    def events(self) -> EventSubscriber: ...

    @property
    def client_id(self) -> str: ...

    @property
    def is_ready(self) -> bool: ...

    @property
    def phase(self) -> str: ...

    @property
    def start_count(self) -> int: ...

    @property
    def features(self) -> ComfyFeatures: ...


InterruptOutcome = Literal["removed", "interrupted"]


@dataclass
class _Clock:
    """Wall-clock marks of one job (epoch ms)."""

    received_ms: float
    staged_ms: float = 0.0
    queued_ms: float = 0.0
    finished_ms: float = 0.0


def _now_ms() -> float:
    return time.time() * 1000.0


def _consume_outcome(task: asyncio.Task[JobResult]) -> None:
    """A job's failure was already reported through JobFailed; mark it retrieved so asyncio does not log it again."""
    if not task.cancelled():
        task.exception()


def mark_run(
    graph: Mapping[str, Any], output_classes: frozenset[str] = comfy_graph.KNOWN_OUTPUT_CLASSES
) -> dict[str, Any]:
    """Give every output node (a node of one of `output_classes`) an input unique to this run. ComfyUI ignores
    unknown inputs when it validates and executes, but its cache key includes them: so output nodes always run and
    write files of their own. Without it a resubmission (same id, or a PreviewImage-only graph) would get back the
    names of files an earlier job took."""
    marker = uuid.uuid4().hex
    marked = dict(graph)
    for node_id in comfy_graph.output_node_ids(graph, output_classes=output_classes):
        marked = comfy_graph.with_input(marked, node_id, RUN_MARKER_INPUT, marker)
    return marked


class JobRunner:
    """Runs jobs on one ComfyInstance. `run` is safe to call concurrently; ComfyUI orders the execution."""

    def __init__(
        self,
        instance: ComfyInstanceLike,
        settings: Settings,
        *,
        registry: JobRegistry,
        stager: InputStager,
        collector: OutputCollector,
        delivery: OutputDelivery | None = None,
        models: ModelUrlResolver | None = None,
    ):
        self._instance = instance
        self._settings = settings
        self._registry = registry
        self._stager = stager
        self._collector = collector
        self._delivery = delivery  # convert_output and uploads; None: outputs are returned as collected
        self._models = models  # None: model URLs in loader inputs are left to ComfyUI (which refuses them)
        self._model_leases: dict[str, ModelLease] = {}  # job id -> its models, pinned until the job ends

    @property
    def registry(self) -> JobRegistry:
        return self._registry

    async def run(self, request: JobRequest, sink: EventSink) -> JobResult:
        """Run one job to its end. Raises a ComfyApiError (after emitting JobFailed) when it does not complete.

        Returns as soon as the job's outcome is known: a job that timed out is answered at its deadline while its
        task (which keeps the id reserved) goes on withdrawing the prompt from ComfyUI. Cancelling the caller
        cancels the job."""
        failed: asyncio.Future[ComfyApiError] = asyncio.get_running_loop().create_future()

        def relay(event: JobEvent) -> None:
            sink(event)
            if isinstance(event, JobFailed) and not failed.done():
                failed.set_result(event.error)

        task = self.start(request, relay)
        task.add_done_callback(_consume_outcome)
        outcomes: list[asyncio.Future[Any]] = [task, failed]
        try:
            await asyncio.wait(outcomes, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])  # as awaiting the task would: the job winds down before the caller goes
            raise
        if task.done():
            failed.cancel()
            return task.result()
        raise failed.result()

    def start(
        self,
        request: JobRequest,
        sink: EventSink,
        *,
        report_queue_position: bool = False,
        trace: JobTrace = NO_TRACE,
    ) -> asyncio.Task[JobResult]:
        """Admit the job and start it in a task of its own; the job stays registered until that task ends.

        Refusals (ComfyUI not ready, queue full, id already live) are raised here, before anything runs. The task's
        result is `run`'s; cancelling it without `request_cancel` withdraws the job without a JobFailed event.
        `report_queue_position` emits JobQueued with ComfyUI's queue position, at the cost of a GET /queue (whose
        answer holds every queued graph): only for callers that show it. `trace` hears of each stage."""
        if not self._instance.is_ready:
            raise ComfyUnavailable(f"ComfyUI is not ready (phase: {self._instance.phase})")
        entry = self._registry.admit(request.id)
        entry.reports_queue_position = report_queue_position
        task = asyncio.create_task(self._run_guarded(request, sink, entry, trace), name=f"job:{request.id}")
        entry.task = task
        task.add_done_callback(lambda _: self._registry.remove(request.id))
        return task

    async def interrupt(self, job_id: str, reason: str = "interrupted on request") -> InterruptOutcome:
        """Stop a job: removed from ComfyUI's queue if pending, interrupted if running. JobNotFound if unknown.
        `reason` ends up in the job's error ("job <id> was <reason>")."""
        entry = self._registry.get(job_id)
        status = entry.status
        if entry.request_cancel(reason) and entry.task is not None:
            # The job's own task withdraws the prompt from ComfyUI as it winds down; answer once it has.
            await asyncio.wait([entry.task], timeout=_ABANDON_TIMEOUT_S + 1.0)
        return "interrupted" if status is JobStatus.RUNNING else "removed"

    async def _run_guarded(self, request: JobRequest, sink: EventSink, entry: JobEntry, trace: JobTrace) -> JobResult:
        """The job's task boundary: every failure is logged once with the job id and becomes a ComfyApiError."""
        current_job.set(request.id)  # this task's log lines (and those of the tasks it starts) carry the job id
        try:
            async with asyncio.timeout(request.timeout_s):
                result = await self._run_stages(request, sink, entry, trace)
        except TimeoutError:
            # Answer at the deadline; withdrawing the prompt can take a CPU-bound ComfyUI seconds more (it notices
            # an interrupt only between nodes or sampler steps). The job id stays reserved until it has.
            error: ComfyApiError = JobTimeout(f"job {request.id} did not finish within {request.timeout_s:g}s")
            self._fail(entry, sink, error, JobStatus.FAILED)
            await self._abandon(entry.prompt_id)
            await self._remove_leftovers(entry)
            raise error from None
        except asyncio.CancelledError:
            await self._abandon(entry.prompt_id)
            await self._remove_leftovers(entry)
            if not entry.cancel_requested:
                raise
            error = JobCancelled(f"job {request.id} was {entry.cancel_reason}")
            self._fail(entry, sink, error, JobStatus.CANCELLED)
            raise error from None
        except ComfyApiError as exc:
            status = JobStatus.CANCELLED if isinstance(exc, JobCancelled) else JobStatus.FAILED
            self._fail(entry, sink, exc, status)
            await self._remove_leftovers(entry)
            raise
        except Exception as exc:
            log.exception("job %s failed unexpectedly", request.id)
            await self._abandon(entry.prompt_id)
            await self._remove_leftovers(entry)
            error = ComfyApiError(f"internal error while running job {request.id}: {type(exc).__name__}")
            self._fail(entry, sink, error, JobStatus.FAILED)
            raise error from exc
        finally:
            self._stager.cleanup(request.id)
            if (lease := self._model_leases.pop(request.id, None)) is not None:
                lease.release()
        entry.status = JobStatus.COMPLETED
        log.info("job %s completed in %.0f ms: %d output(s)", request.id, result.stats.total_ms, len(result.outputs))
        sink(JobCompleted(request.id, result))
        return result

    def _fail(self, entry: JobEntry, sink: EventSink, error: ComfyApiError, status: JobStatus) -> None:
        entry.status = status
        self._collector.remove_job_files(entry.id)
        log.info("job %s %s: %s", entry.id, status.value, error.message)
        sink(JobFailed(entry.id, error))

    async def _run_stages(self, request: JobRequest, sink: EventSink, entry: JobEntry, trace: JobTrace) -> JobResult:
        with Stages(trace) as stages:
            return await self._run_staged(request, sink, entry, stages)

    async def _run_staged(self, request: JobRequest, sink: EventSink, entry: JobEntry, stages: Stages) -> JobResult:
        clock = _Clock(received_ms=_now_ms())
        entry.status = JobStatus.STAGING
        stages.enter("stage_inputs")
        graph = await self._prepare(request)
        entry.prefixes = tuple(prefix for _, prefix in comfy_graph.filename_prefixes(graph))
        clock.staged_ms = _now_ms()
        prompt_id = self._registry.new_prompt(entry)
        stages.annotate("comfyui.prompt_id", prompt_id)

        def started() -> None:
            if entry.status is not JobStatus.RUNNING:
                entry.mark_running()
                stages.enter("execute")

        prefetch = self._collector.prefetch(request.id)
        try:
            with self._instance.events.subscribe(prompt_id) as subscription:
                clock.queued_ms = _now_ms()
                stages.enter("queue")
                try:
                    await self._submit(entry, graph, sink, request.extra_data)
                except WorkflowRejected:
                    await self._discard_partial_run(entry, graph, subscription)
                    raise
                reported = prefetch.node_reported if prefetch is not None else None
                watch = self._watch(entry, graph, subscription, sink, on_started=started, on_output=reported)
                outcome = await watch.wait()
            clock.finished_ms = _now_ms()
            stages.enter("collect")
            outputs, texts = await self._collector.collect(
                request.id, outcome.outputs, keep=request.keep_outputs, prefetched=prefetch
            )
        finally:
            if prefetch is not None:
                await prefetch.aclose()
        delivered = DeliveredOutputs(outputs, None)
        if self._delivery is not None:
            if request.upload is not None:
                entry.status = JobStatus.UPLOADING
                stages.enter("upload")
            delivered = await self._delivery.deliver(request, outputs)
        outputs = delivered.outputs
        for output in outputs:
            sink(OutputReady(request.id, output))
        if request.discard_outputs:
            discard(outputs)
        stats = self._stats(clock, outcome)
        record_upload_time(stats, delivered.upload_ms)
        return JobResult(request.id, graph, outputs, texts, stats)

    async def _prepare(self, request: JobRequest) -> dict[str, Any]:
        """Stage media inputs, fetch models given by URL, then give this job its own output names and normalised
        paths."""
        graph, _ = await self._stager.stage(
            request.id, request.graph, credentials=request.credentials, named=request.named_inputs
        )
        if self._models is not None:
            graph, self._model_leases[request.id] = await self._models.resolve_model_urls(graph, request.credentials)
        graph = comfy_graph.rewrite_filename_prefixes(graph, request.id)
        return comfy_graph.normalise_paths(mark_run(graph, self._instance.features.output_classes))

    async def _submit(
        self, entry: JobEntry, graph: Mapping[str, Any], sink: EventSink, extra_data: Mapping[str, Any] | None
    ) -> None:
        client = self._instance.client
        prompt_id = entry.prompt_id
        assert prompt_id is not None
        await client.queue_prompt(graph, prompt_id=prompt_id, client_id=self._instance.client_id, extra_data=extra_data)
        if entry.status is JobStatus.STAGING:  # the prompt may already have started (fast ComfyUI, frames first)
            entry.status = JobStatus.QUEUED
        sink(JobAccepted(entry.id))  # before any frame of the run: the watch starts after this returns
        if not entry.reports_queue_position:
            return
        try:
            position = await client.queue_position(prompt_id)
        except ComfyApiError:
            position = None
        sink(JobQueued(entry.id, position if position is not None else 0))

    def _watch(
        self,
        entry: JobEntry,
        graph: Mapping[str, Any],
        subscription: Subscription,
        sink: EventSink,
        *,
        on_started: Callable[[], None] = lambda: None,
        on_output: Callable[[str, Mapping[str, Any]], None] | None = None,
    ) -> PromptWatch:
        assert entry.prompt_id is not None
        return PromptWatch(
            entry.id,
            prompt_id=entry.prompt_id,
            messages=subscription,
            history=self._instance.client,
            graph=graph,
            sink=sink,
            idle_timeout_s=self._settings.comfy.ws_idle_timeout_s,
            on_started=on_started,
            on_output=on_output,
            seen_outputs=entry.seen_outputs,
        )

    async def _discard_partial_run(self, entry: JobEntry, graph: Mapping[str, Any], subscription: Subscription) -> None:
        """ComfyUI queues the valid part of a partly invalid graph, and on an idle ComfyUI it runs before it can be
        withdrawn: wait (bounded) for it to end, then remove whatever it wrote. Nothing to do when fully rejected."""
        client = self._instance.client
        job_id, prompt_id = entry.id, entry.prompt_id
        assert prompt_id is not None
        with contextlib.suppress(ComfyApiError):
            if await client.queue_position(prompt_id) is None and await client.get_history(prompt_id) is None:
                return
        watch = self._watch(entry, graph, subscription, lambda _: None)
        outputs: Mapping[str, Any] = {}
        try:
            async with asyncio.timeout(_PARTIAL_RUN_WAIT_S):
                outputs = (await watch.wait()).outputs
        except (ComfyApiError, TimeoutError):
            outputs = watch.outputs_seen
        with contextlib.suppress(ComfyApiError, OSError):
            files, _ = await self._collector.collect(job_id, outputs, keep=False)
            discard(files)
        self._collector.remove_job_files(job_id)

    async def _remove_leftovers(self, entry: JobEntry) -> None:
        """A failed, timed-out or cancelled job leaves nothing in ComfyUI's folders: once its prompt has left
        ComfyUI, what it reported (previews included) and every file under its output prefixes are removed."""
        if entry.prompt_id is None or self._settings.comfy.keep_outputs:
            return
        outputs: dict[str, Any] = {}
        with contextlib.suppress(ComfyApiError, TimeoutError):
            async with asyncio.timeout(_ABANDON_TIMEOUT_S):
                history = await self._instance.client.get_history(entry.prompt_id)
                found = history.get("outputs") if history else None
                outputs.update(found if isinstance(found, Mapping) else {})
        # An interrupted prompt's history lists no outputs: what its `executed` frames reported counts too.
        outputs.update({node: output for node, output in entry.seen_outputs.items() if node not in outputs})
        removed = self._collector.remove_comfy_files(entry.prefixes, outputs)
        if removed:
            log.info("job %s: removed %d file(s) it left in ComfyUI's folders", entry.id, removed)

    async def _abandon(self, prompt_id: str | None) -> None:
        """Make sure ComfyUI drops a prompt we gave up on (None: it was never queued): remove it if pending,
        interrupt it if running, and wait (bounded) until it has left the queue. Where ComfyUI has the jobs cancel
        route, that one call does both. A real ComfyUI only notices an interrupt between sampler steps or nodes,
        seconds later on a CPU; and it clears the interrupt flag as it begins a prompt, so one sent just as the
        prompt starts is lost: it is sent again while the prompt is still listed."""
        if prompt_id is None:
            return
        client = self._instance.client
        cancel_api = self._instance.features.jobs_cancel
        with contextlib.suppress(ComfyApiError, TimeoutError, OSError):
            async with asyncio.timeout(_ABANDON_TIMEOUT_S):
                if cancel_api:
                    await client.cancel_prompt(prompt_id)
                else:
                    await client.delete_from_queue([prompt_id])
                while await client.queue_position(prompt_id) is not None:
                    if cancel_api:
                        await client.cancel_prompt(prompt_id)
                    else:
                        await client.interrupt(prompt_id=prompt_id)
                    await asyncio.sleep(_ABANDON_POLL_S)

    @staticmethod
    def _stats(clock: _Clock, outcome: PromptOutcome) -> Stats:
        now = _now_ms()
        start, end = outcome.execution_start_ms, outcome.execution_end_ms
        return Stats(
            queue_wait_ms=round(max(0.0, (start or clock.queued_ms) - clock.queued_ms), 3),
            preprocess_ms=round(clock.staged_ms - clock.received_ms, 3),
            comfy_round_trip_ms=round(clock.finished_ms - clock.staged_ms, 3),
            execution_start_ms=start,
            execution_end_ms=end,
            execution_ms=round(end - start, 3) if start is not None and end is not None else None,
            nodes=outcome.nodes,
            postprocess_ms=round(now - clock.finished_ms, 3),
            total_ms=round(now - clock.received_ms, 3),
        )
