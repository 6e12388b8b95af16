"""The job runner against a scripted ComfyUI edge: events in order, completion by frame or by /history, every
failure mapped to its domain error, timeouts and interrupts, and no staged or output file left behind."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfyui_api.comfy import messages as msg
from comfyui_api.comfy.features import ComfyFeatures
from comfyui_api.errors import (
    CapacityError,
    ComfyUnavailable,
    ExecutionFailed,
    InputStagingError,
    JobCancelled,
    JobNotFound,
    JobTimeout,
    WorkflowRejected,
)
from comfyui_api.jobs.model import (
    JobAccepted,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobQueued,
    JobRequest,
    JobStarted,
    NodeExecuting,
    OutputReady,
    ProgressUpdated,
)
from comfyui_api.jobs.outputs import OutputCollector, discard
from comfyui_api.jobs.registry import JobRegistry
from comfyui_api.jobs.runner import RUN_MARKER_INPUT, JobRunner
from comfyui_api.jobs.staging import InputStager
from comfyui_api.settings import ComfySettings, Settings
from tests.unit.jobs.fake_comfy import FakeClient, FakeEvents, FakeInstance, Script, Step, success_script
from tests.unit.jobs.samples import image_bytes

PNG = image_bytes("PNG")
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "shot"}},
}


class Harness:
    def __init__(
        self, tmp_path: Path, http: httpx.AsyncClient, script: Script, *, max_depth: int = 0, colocated: bool = True
    ):
        self.tmp_path = tmp_path
        for name in ("input", "output", "temp"):
            (tmp_path / name).mkdir(exist_ok=True)
        comfy = ComfySettings(
            input_dir=tmp_path / "input",
            output_dir=tmp_path / "output",
            temp_dir=tmp_path / "temp",
            ws_idle_timeout_s=0.2,
            outputs_colocated=colocated,
        )
        self.settings = Settings(comfy=comfy)
        self.events = FakeEvents()
        self.client = FakeClient(self.events, script)
        self.client.view_dir = None if colocated else comfy.output_dir
        self.instance = FakeInstance(self.client, self.events)
        self.registry = JobRegistry(max_depth=max_depth)
        self.runner = JobRunner(
            self.instance,  # type: ignore[arg-type]
            self.settings,
            registry=self.registry,
            stager=InputStager(self.settings.jobs, comfy.input_dir, http=http),
            collector=OutputCollector(comfy, self.client, tmp_path / "work"),
        )
        self.seen: list[JobEvent] = []
        self._changed = asyncio.Event()

    def sink(self, event: JobEvent) -> None:
        self.seen.append(event)
        self._changed.set()

    async def until_seen(self, event_type: type[JobEvent]) -> None:
        async with asyncio.timeout(2):
            while not any(isinstance(event, event_type) for event in self.seen):
                self._changed.clear()
                await self._changed.wait()

    async def run(self, job_id: str = "job-1", graph: Mapping[str, Any] = GRAPH, timeout_s: float = 5.0):
        request = JobRequest(id=job_id, graph=graph, timeout_s=timeout_s)
        return await self.runner.start(request, self.sink, report_queue_position=True)

    def prompt_of(self, job_id: str) -> str:
        """ComfyUI's prompt_id of the job's (last) submission: never the job id itself."""
        found = [pid for pid in self.client.queued if self.registry.job_id_for_prompt(pid) == job_id]
        assert found, f"job {job_id} was never queued"
        assert found[-1] != job_id
        return found[-1]

    def jobs_of(self, prompt_ids: list[str | None]) -> list[str | None]:
        """Prompt ids sent to ComfyUI, as the job ids they belong to."""
        return [self.registry.job_id_for_prompt(pid) if pid else None for pid in prompt_ids]

    def leftovers(self) -> list[Path]:
        return [p for p in self.tmp_path.rglob("*") if p.is_file()]


@pytest.fixture
async def http():
    async with httpx.AsyncClient() as client:
        yield client


async def test_success_emits_events_in_order_and_returns_files(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    result = await harness.run()
    kinds = [type(event) for event in harness.seen]
    assert kinds[:3] == [JobAccepted, JobQueued, JobStarted], "accepted by ComfyUI, then its position, then run"
    assert kinds[-2:] == [OutputReady, JobCompleted]
    assert [e.node_id for e in harness.seen if isinstance(e, NodeExecuting)] == ["1", "9"]
    percents = [e.percent for e in harness.seen if isinstance(e, ProgressUpdated)]
    assert percents == sorted(percents) and percents
    assert [(o.node_id, o.kind, o.content_type, o.size_bytes) for o in result.outputs] == [
        ("9", "image", "image/png", len(PNG))
    ]
    assert result.outputs[0].filename == "job-1_shot_00001_.png"
    assert result.stats.execution_ms == 500
    assert set(result.stats.nodes) == {"1", "9"}
    queued = harness.client.queued[harness.prompt_of("job-1")]
    assert queued["9"]["inputs"]["filename_prefix"] == "job-1_shot"
    assert RUN_MARKER_INPUT in queued["9"]["inputs"] and RUN_MARKER_INPUT not in queued["1"]["inputs"]
    assert "job-1" not in harness.registry
    assert harness.events.subscriptions[harness.prompt_of("job-1")] == []
    discard(result.outputs)
    assert harness.leftovers() == []


async def test_without_a_shared_disk_outputs_are_fetched_while_the_prompt_is_still_running(tmp_path, http) -> None:
    base = success_script(tmp_path / "output", PNG)

    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        steps = base(prompt_id, graph)
        executed = next(i for i, step in enumerate(steps) if isinstance(step, msg.Executed))
        return [*steps[: executed + 1], 0.05, *steps[executed + 1 :]]  # ComfyUI still busy after the save

    harness = Harness(tmp_path, http, script, colocated=False)
    result = await harness.run()
    assert harness.client.downloads == [("job-1_shot_00001_.png", msg.Executed)]  # before the prompt's end
    assert result.outputs[0].path is not None and result.outputs[0].path.read_bytes() == PNG
    discard(result.outputs)
    assert [path.name for path in harness.leftovers()] == ["job-1_shot_00001_.png"]  # ComfyUI's own copy only


async def test_media_inputs_are_staged_and_removed_afterwards(tmp_path, http) -> None:
    staged_seen: list[bool] = []

    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        def check() -> None:
            staged_seen.append((tmp_path / "input" / graph["5"]["inputs"]["image"]).is_file())

        return [check, *success_script(tmp_path / "output", PNG)(prompt_id, graph)]

    graph = {**GRAPH, "5": {"class_type": "LoadImage", "inputs": {"image": base64.b64encode(PNG).decode()}}}
    harness = Harness(tmp_path, http, script)
    result = await harness.run(graph=graph)
    assert harness.client.queued[harness.prompt_of("job-1")]["5"]["inputs"]["image"] == "job-1/5-image.png"
    assert staged_seen == [True]
    assert not (tmp_path / "input" / "job-1").exists()
    discard(result.outputs)


async def test_execution_error_carries_the_node_details(tmp_path, http) -> None:
    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        error = msg.ExecutionError(
            prompt_id,
            "1",
            "LoadImage",
            "UnidentifiedImageError",
            "cannot identify image",
            ("Traceback...", "line 2"),
            (),
            2000,
        )
        return [msg.ExecutionStart(prompt_id, 1), msg.Executing(prompt_id, "1"), error, msg.Executing(prompt_id, None)]

    harness = Harness(tmp_path, http, script)
    with pytest.raises(ExecutionFailed) as caught:
        await harness.run()
    assert caught.value.details == {
        "node_id": "1",
        "node_type": "LoadImage",
        "exception_type": "UnidentifiedImageError",
        "exception_message": "cannot identify image",
        "traceback": ["Traceback...", "line 2"],
    }
    assert isinstance(harness.seen[-1], JobFailed) and harness.seen[-1].error is caught.value
    assert harness.leftovers() == []


async def test_interrupted_frame_is_a_cancellation(tmp_path, http) -> None:
    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        return [msg.ExecutionStart(prompt_id, 1), msg.ExecutionInterrupted(prompt_id, "1", "KSampler", 2)]

    with pytest.raises(JobCancelled, match="interrupted at node 1"):
        await Harness(tmp_path, http, script).run()


async def test_comfyui_exit_fails_the_job_at_once(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [msg.ExecutionStart(pid, 1), msg.Executing(pid, "1")])
    task = asyncio.create_task(harness.run(timeout_s=30))
    await asyncio.sleep(0.05)
    harness.events.broadcast(msg.ComfyExited(-9))
    with pytest.raises(ComfyUnavailable, match=r"exited \(code -9\)"):
        await asyncio.wait_for(task, 2)


async def test_lost_terminal_frame_is_recovered_from_history(tmp_path, http) -> None:
    """The socket drops after execution started; the prompt finishes unseen; /history tells."""

    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        filename = f"{graph['9']['inputs']['filename_prefix']}_00001_.png"

        def finish_unseen() -> None:
            (tmp_path / "output" / filename).write_bytes(PNG)
            harness.client.positions.pop(prompt_id)
            harness.client.history[prompt_id] = {
                "outputs": {"9": {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}},
                "status": {
                    "status_str": "success",
                    "completed": True,
                    "messages": [
                        ["execution_start", {"prompt_id": prompt_id, "timestamp": 100}],
                        ["execution_success", {"prompt_id": prompt_id, "timestamp": 900}],
                    ],
                },
            }

        return [msg.ExecutionStart(prompt_id, 100), msg.StreamDisconnected("connection lost"), 0.05, finish_unseen]

    harness = Harness(tmp_path, http, script)
    result = await asyncio.wait_for(harness.run(), 5)
    assert [o.filename for o in result.outputs] == ["job-1_shot_00001_.png"]
    assert result.stats.execution_ms == 800
    discard(result.outputs)


async def test_prompt_forgotten_by_comfyui_fails_instead_of_waiting(tmp_path, http) -> None:
    def script(prompt_id: str, graph: Mapping[str, Any]) -> list[Step]:
        return [lambda: harness.client.positions.pop(prompt_id)]

    harness = Harness(tmp_path, http, script)
    with pytest.raises(ComfyUnavailable, match="no longer knows"):
        await asyncio.wait_for(harness.run(timeout_s=30), 5)


async def test_timeout_abandons_the_prompt(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [])
    with pytest.raises(JobTimeout, match=r"within 0\.3s"):
        await harness.run(timeout_s=0.3)
    assert harness.jobs_of(harness.client.deleted) == ["job-1"]
    assert harness.jobs_of(harness.client.interrupted) == ["job-1"]
    assert isinstance(harness.seen[-1], JobFailed)
    assert "job-1" not in harness.registry


async def test_a_timed_out_job_is_answered_at_once_and_withdrawn_after(tmp_path, http, monkeypatch) -> None:
    """The timeout is answered at the deadline. The job's task then makes ComfyUI drop the prompt: an interrupt that
    ComfyUI cleared (it arrived as the prompt began) is sent again until the prompt leaves the queue, and the job id
    stays reserved until then."""
    harness = Harness(tmp_path, http, lambda pid, graph: [])
    stop_prompt = harness.client.interrupt
    calls: list[str | None] = []

    async def interrupt(prompt_id: str | None = None) -> None:
        calls.append(prompt_id)
        if len(calls) > 1:  # the first one arrived as the prompt began, and ComfyUI cleared it
            await stop_prompt(prompt_id)

    monkeypatch.setattr(harness.client, "interrupt", interrupt)
    with pytest.raises(JobTimeout):
        await harness.runner.run(JobRequest(id="job-1", graph=GRAPH, timeout_s=0.3), harness.sink)
    assert isinstance(harness.seen[-1], JobFailed)
    assert "job-1" in harness.runner.registry  # still withdrawing the prompt
    assert await harness.runner.registry.wait_idle(5)
    assert harness.jobs_of(calls) == ["job-1", "job-1"]  # and no more once the prompt had left the queue


async def test_a_plain_run_does_not_ask_for_the_queue_position(tmp_path, http, monkeypatch) -> None:
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    asked: list[str] = []

    async def queue_position(prompt_id: str) -> int | None:
        asked.append(prompt_id)
        return None

    monkeypatch.setattr(harness.client, "queue_position", queue_position)
    request = JobRequest(id="job-1", graph=GRAPH, timeout_s=5.0)
    result = await harness.runner.run(request, harness.sink)
    assert result.outputs
    assert asked == []
    assert not any(isinstance(event, JobQueued) for event in harness.seen)
    assert isinstance(harness.seen[-1], JobCompleted)


async def test_interrupt_a_pending_job(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [])
    task = asyncio.create_task(harness.run(timeout_s=30))
    await harness.until_seen(JobQueued)
    harness.client.positions[harness.prompt_of("job-1")] = 3
    assert await harness.runner.interrupt("job-1") == "removed"
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(task, 2)
    assert harness.jobs_of(harness.client.deleted) == ["job-1"]
    assert "job-1" not in harness.registry


async def test_interrupt_a_running_job(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [msg.ExecutionStart(pid, 1), msg.Executing(pid, "1")])
    task = asyncio.create_task(harness.run(timeout_s=30))
    await harness.until_seen(NodeExecuting)
    assert await harness.runner.interrupt("job-1") == "interrupted"
    with pytest.raises(JobCancelled):
        await asyncio.wait_for(task, 2)
    assert harness.jobs_of(harness.client.interrupted) == ["job-1"]


async def test_interrupt_unknown_job(tmp_path, http) -> None:
    with pytest.raises(JobNotFound):
        await Harness(tmp_path, http, lambda pid, graph: []).runner.interrupt("nope")


async def test_caller_going_away_abandons_the_prompt(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [msg.ExecutionStart(pid, 1)])
    task = asyncio.create_task(harness.run(timeout_s=30))
    await harness.until_seen(JobStarted)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert harness.jobs_of(harness.client.interrupted) == ["job-1"]
    assert "job-1" not in harness.registry


async def test_queue_full_and_not_ready_are_refused_up_front(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [], max_depth=1)
    first = asyncio.create_task(harness.run("a", timeout_s=30))
    await asyncio.sleep(0.01)
    with pytest.raises(CapacityError):
        await harness.run("b")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    harness.instance.is_ready = False
    harness.instance.phase = "restarting"
    with pytest.raises(ComfyUnavailable, match="restarting"):
        await harness.run("c")
    assert harness.jobs_of(list(harness.client.queued)) == ["a"]


async def test_rejected_workflow_and_bad_input_leave_nothing_behind(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [])
    harness.client.reject = WorkflowRejected("bad", comfy_error={"type": "x"}, node_errors={"9": {"errors": []}})
    graph = {**GRAPH, "5": {"class_type": "LoadImage", "inputs": {"image": base64.b64encode(PNG).decode()}}}
    with pytest.raises(WorkflowRejected):
        await harness.run(graph=graph)
    bad = {**GRAPH, "5": {"class_type": "LoadImage", "inputs": {"image": "%" * 100}}}
    with pytest.raises(InputStagingError):
        await harness.run("job-2", graph=bad)
    assert harness.leftovers() == []
    assert harness.registry.depth == 0


async def test_partly_accepted_graph_that_already_ran_leaves_no_files(tmp_path, http) -> None:
    """ComfyUI ran the valid branch before it could be withdrawn: its files are removed, the job still fails."""
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    original_queue = harness.client.queue_prompt

    async def queue_then_reject(graph, **kwargs):
        await original_queue(graph, **kwargs)
        raise WorkflowRejected("partly invalid", comfy_error={"type": "x"}, node_errors={"20": {"errors": []}})

    harness.client.queue_prompt = queue_then_reject  # type: ignore[method-assign]
    with pytest.raises(WorkflowRejected):
        await harness.run()
    await harness.client.settle()
    assert harness.leftovers() == []
    assert not any(isinstance(event, OutputReady) for event in harness.seen)


async def test_prompt_ids_are_fresh_uuids_and_never_the_job_id(tmp_path, http) -> None:
    """ComfyUI >= 0.25 refuses a prompt_id that is not a canonical UUID and newer ones refuse one seen before: a
    caller's own id, and the same id run twice, each get a fresh uuid4 as ComfyUI's prompt_id."""
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    first = await harness.run("first-image")
    first_prompt = harness.prompt_of("first-image")
    second = await harness.run("first-image")
    second_prompt = harness.prompt_of("first-image")
    assert first_prompt != second_prompt
    for prompt_id in (first_prompt, second_prompt):
        assert str(uuid.UUID(prompt_id)) == prompt_id
    assert all(event.job_id == "first-image" for event in harness.seen)
    discard(first.outputs + second.outputs)


async def test_output_classes_reported_by_comfyui_get_the_run_marker(tmp_path, http) -> None:
    """An output node class the built-in list does not know (new in ComfyUI, or a custom node) is marked when the
    running ComfyUI's /object_info says it is an output node."""
    harness = Harness(tmp_path, http, success_script(tmp_path / "output", PNG))
    harness.instance.features = ComfyFeatures(output_classes=frozenset({"SaveImage", "SaveText"}))
    graph = {**GRAPH, "4": {"class_type": "SaveText", "inputs": {"text": "hi"}}}
    result = await harness.run(graph=graph)
    queued = harness.client.queued[harness.prompt_of("job-1")]
    assert RUN_MARKER_INPUT in queued["4"]["inputs"]
    discard(result.outputs)


async def test_jobs_cancel_api_is_used_where_comfyui_has_it(tmp_path, http) -> None:
    harness = Harness(tmp_path, http, lambda pid, graph: [])
    harness.instance.features = ComfyFeatures(jobs_cancel=True)
    cancelled: list[str] = []

    async def cancel_prompt(prompt_id: str) -> bool:
        cancelled.append(prompt_id)
        harness.client.positions.pop(prompt_id, None)
        return True

    harness.client.cancel_prompt = cancel_prompt  # type: ignore[attr-defined]
    with pytest.raises(JobTimeout):
        await harness.run(timeout_s=0.3)
    assert await harness.registry.wait_idle(5)
    assert harness.jobs_of(cancelled) == ["job-1"]
    assert harness.client.deleted == [] and harness.client.interrupted == []
