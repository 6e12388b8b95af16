"""The start-up sequence around ComfyUI: the readiness phase it gives through starts and restarts, the warmup and
workflow steps, and when it declares the server unable to serve. ComfyUI and the job runner are faked (this unit's
edges); the model services and the warmup are the real ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.errors import ComfyUnavailable
from comfyui_api.jobs.warmup import Warmup
from comfyui_api.models.services import ModelServices
from comfyui_api.settings import ComfySettings, ModelSettings, WarmupSettings
from comfyui_api.startup import StartupSequence
from tests.unit.jobs.test_jobs_warmup import GRAPH, FakeRunner


class FakeComfyClient:
    async def object_info(self) -> dict[str, Any]:
        return {}

    async def list_models(self, folder: str | None = None) -> list[str]:
        return [] if folder else ["checkpoints"]


class FakeInstance:
    def __init__(self) -> None:
        self.client = FakeComfyClient()
        self.is_ready = False
        self.start_count = 0
        self.phase = "starting"

    def become_ready(self) -> None:
        self.is_ready, self.phase = True, "ready"
        self.start_count += 1

    def exit(self) -> None:
        self.is_ready, self.phase = False, "restarting"


class Recorder:
    def __init__(self) -> None:
        self.fatal: list[str] = []
        self.loads: list[str | None] = []
        self.load_errors: list[Exception] = []

    def on_fatal(self, reason: str) -> None:
        self.fatal.append(reason)

    async def load_workflows(self, default_checkpoint: str | None) -> int:
        self.loads.append(default_checkpoint)
        if self.load_errors:
            raise self.load_errors.pop(0)
        return 2


def make_sequence(
    tmp_path: Path, runner: FakeRunner, recorder: Recorder, *, warmup: bool = True, required: bool = False
) -> tuple[StartupSequence, FakeInstance]:
    prompt_file = None
    if warmup:
        prompt_file = tmp_path / "warmup.json"
        prompt_file.write_text(json.dumps(GRAPH))
    models = ModelServices.from_settings(
        ModelSettings(cache_dir=tmp_path / "cache"), ComfySettings(home=tmp_path, model_dir=tmp_path / "models")
    )
    instance = FakeInstance()
    sequence = StartupSequence(
        instance,  # type: ignore[arg-type]
        models,
        Warmup(WarmupSettings(prompt_file=prompt_file, required=required)),
        runner,
        on_fatal=recorder.on_fatal,
    )
    return sequence, instance


async def test_each_start_of_comfyui_is_warmed_up_before_it_counts_as_ready(tmp_path: Path) -> None:
    runner, recorder = FakeRunner(), Recorder()
    sequence, instance = make_sequence(tmp_path, runner, recorder)

    assert await sequence.before_comfy_starts()
    assert sequence.blocking_phase() is None  # ComfyUI's own phase ("starting") is for the caller to report
    instance.become_ready()
    assert sequence.blocking_phase() == "warmup"
    await sequence.on_comfy_ready()
    assert sequence.blocking_phase() is None

    instance.exit()
    assert sequence.blocking_phase() is None
    instance.become_ready()
    # The previous warmup is done, but it warmed the previous process: not ready until this one is warmed.
    assert sequence.blocking_phase() == "warmup"
    await sequence.on_comfy_ready()
    assert sequence.blocking_phase() is None
    assert len(runner.requests) == 2 and all(r.discard_outputs for r in runner.requests)
    assert sequence.details()["warmup"] | {"duration_s": None} == {
        "phase": "done",
        "error": None,
        "duration_s": None,
        "run_count": 2,
    }
    assert "models" not in sequence.details()  # no manifest, no after_start models
    assert recorder.fatal == []


async def test_without_a_warmup_the_phase_is_starting_until_the_steps_ran(tmp_path: Path) -> None:
    sequence, instance = make_sequence(tmp_path, FakeRunner(), Recorder(), warmup=False)
    assert await sequence.before_comfy_starts()
    instance.become_ready()
    assert sequence.blocking_phase() == "starting"
    await sequence.on_comfy_ready()
    assert sequence.blocking_phase() is None
    assert sequence.details() == {}


@pytest.mark.parametrize("required", [False, True])
async def test_a_failed_warmup_blocks_readiness_and_stops_the_server_only_when_required(
    tmp_path: Path, required: bool
) -> None:
    recorder = Recorder()
    sequence, instance = make_sequence(tmp_path, FakeRunner(ComfyUnavailable("boom")), recorder, required=required)
    assert await sequence.before_comfy_starts()
    instance.become_ready()
    await sequence.on_comfy_ready()
    if required:
        assert sequence.blocking_phase() == "failed"
        assert len(recorder.fatal) == 1 and "WARMUP_REQUIRED" in recorder.fatal[0] and "boom" in recorder.fatal[0]
    else:
        assert sequence.blocking_phase() == "warmup_failed"
        assert recorder.fatal == []
        assert "boom" in sequence.details()["warmup"]["error"]


async def test_an_unreadable_required_warmup_graph_stops_the_server_before_comfyui_starts(tmp_path: Path) -> None:
    recorder = Recorder()
    sequence, _ = make_sequence(tmp_path, FakeRunner(), recorder, required=True)
    (tmp_path / "warmup.json").write_text("not json")
    assert not await sequence.before_comfy_starts()
    assert sequence.blocking_phase() == "failed"
    assert "is not valid JSON" in recorder.fatal[0]


async def test_workflows_load_once_with_the_warmup_checkpoint_and_retry_after_comfyui_failed(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.load_errors.append(ComfyUnavailable("ComfyUI went away"))
    sequence, instance = make_sequence(tmp_path, FakeRunner(), recorder)
    sequence.serve_workflows(recorder.load_workflows)
    assert await sequence.before_comfy_starts()
    instance.become_ready()
    assert sequence.blocking_phase() == "loading_workflows"
    await sequence.on_comfy_ready()
    assert sequence.blocking_phase() == "loading_workflows"  # not fatal: the next start tries again
    instance.exit()
    instance.become_ready()
    await sequence.on_comfy_ready()
    assert sequence.blocking_phase() is None
    instance.become_ready()
    await sequence.on_comfy_ready()
    assert recorder.loads == ["sdxl.safetensors", "sdxl.safetensors"]  # loaded once, after one failed try
    assert recorder.fatal == []


async def test_a_workflow_dir_that_cannot_be_served_stops_the_server(tmp_path: Path) -> None:
    recorder = Recorder()
    recorder.load_errors.append(ValueError("WORKFLOW_DIR /x: 1 problem(s)"))
    sequence, instance = make_sequence(tmp_path, FakeRunner(), recorder)
    sequence.serve_workflows(recorder.load_workflows)
    assert await sequence.before_comfy_starts()
    instance.become_ready()
    await sequence.on_comfy_ready()
    assert recorder.fatal == ["WORKFLOW_DIR /x: 1 problem(s)"]
    assert sequence.blocking_phase() == "failed"
