"""docker/smoke-test.sh, run against a stand-in container engine (tests/servers/container_engine.py: the "image"
is this checkout's install, a "container" a process of it), since no engine runs here: the script's steps, its
readiness wait, the HTTP checks and the exit code after the stop all happen for real against a live server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.server import REPO_ROOT
from tests.servers.processes import free_port

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]


def stand_in_engine(tmp_path: Path) -> Path:
    engine = tmp_path / "engine"
    engine.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m tests.servers.container_engine "$@"\n')
    engine.chmod(0o755)
    return engine


def run_script(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ENGINE": str(stand_in_engine(tmp_path)),
        "STAND_IN_ENGINE_DIR": str(tmp_path / "containers"),
        "PORT": str(free_port()),
        "PYTHON": sys.executable,
        "READY_TIMEOUT_S": "120",
        "PYTHONPATH": str(REPO_ROOT),
    }
    argv = ["bash", str(REPO_ROOT / "docker" / "smoke-test.sh"), "comfyui-api:test", *extra]
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_image_smoke_test_passes_against_a_working_image(tmp_path: Path) -> None:
    done = run_script(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "== ok: comfyui-api:test" in done.stdout
    assert "ready after" in done.stdout and "-byte PNG" in done.stdout


def test_the_image_smoke_test_fails_when_the_server_does_not_come_up(tmp_path: Path) -> None:
    done = run_script(tmp_path, "-e", "PORT=notaport")  # the server refuses its settings and exits at once
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "exited before /ready" in done.stderr and "PORT" in done.stderr
