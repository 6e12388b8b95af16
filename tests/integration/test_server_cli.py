"""The `python -m comfyui_api` command line: bad settings exit 2 naming the variable; a ComfyUI that cannot start
makes the server exit non-zero; `simulator` runs the simulator's own command line; /health before ComfyUI is up."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.server import REPO_ROOT, make_server


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "comfyui_api", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip


def test_bad_setting_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = make_server(tmp_path).env | {"PORT": "eighty"}
    result = run_cli(env=env)
    assert result.returncode == 2
    assert "PORT" in result.stderr and "eighty" in result.stderr


def test_simulator_subcommand_runs_the_simulator_command_line() -> None:
    result = run_cli("simulator", "--help")
    assert result.returncode == 0
    assert "--step-seconds" in result.stdout


def test_comfyui_that_cannot_start_stops_the_server(tmp_path: Path) -> None:
    env = make_server(tmp_path).env | {"CMD": f"{sys.executable} -c 'import sys; sys.exit(3)'"}
    result = run_cli(env=env)
    assert result.returncode != 0
    assert "ComfyUI did not start" in result.stderr


def test_health_is_503_until_comfyui_has_started(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    server.env["CMD"] = shlex.join(["sh", "-c", f"sleep 2; exec {server.env['CMD']}"])
    server.start()
    try:
        deadline = time.monotonic() + 20
        statuses: list[int] = []
        while time.monotonic() < deadline:
            try:
                response = httpx.get(server.url("/health"), timeout=2)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            statuses.append(response.status_code)
            if response.status_code == 200:
                break
            assert response.json() == {"status": "starting", "comfyui": "starting"}
            time.sleep(0.1)
        assert statuses[0] == 503 and statuses[-1] == 200
    finally:
        server.stop()
