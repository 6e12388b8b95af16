"""The simulator's dependencies are an extra: without them the simulator, and a server that would start it, say
what to install instead of failing half way."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from comfyui_api import simulator
from comfyui_api.cli.server import SETTINGS_EXIT_CODE, serve_command
from comfyui_api.simulator.__main__ import main as simulator_main

ABSENT = "comfyui_api_test_no_such_module"


def test_everything_the_extra_brings_is_installed_here() -> None:
    assert simulator.missing_modules() == []


def test_the_simulator_names_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(simulator, "EXTRA_MODULES", ("numpy", ABSENT))
    with pytest.raises(SystemExit) as stopped:
        simulator_main(["--base-directory", str(tmp_path)])
    assert str(stopped.value) == f"the ComfyUI simulator needs {ABSENT}: pip install 'comfyui-api[simulator]'"
    assert not (tmp_path / "input").exists(), "nothing was started or created"


def test_a_server_that_would_run_the_simulator_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(simulator, "EXTRA_MODULES", (ABSENT,))
    try:
        code = serve_command({"COMFYUI_API_HOME": str(tmp_path)}, worker=False)
    finally:
        logging.getLogger().handlers.clear()  # the server configured the root logger for its run
    said = capfd.readouterr().err
    assert code == SETTINGS_EXIT_CODE
    assert f"cannot run without {ABSENT}: pip install 'comfyui-api[simulator]'" in said
    assert "set CMD or COMFY_HOME" in said
