"""The `python -m comfyui_api` command line: bad settings exit 2 naming the variable; a ComfyUI that cannot start
makes the server exit non-zero; `simulator` runs the simulator's own command line; /health before ComfyUI is up."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx

from comfyui_api.settings import VARIABLES
from comfyui_api.version import package_version
from tests.integration.server import REPO_ROOT, free_port, make_server


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


def test_version_and_help(tmp_path: Path) -> None:
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"comfyui-api {package_version()}"
    for args in (("--help",), ("serve", "--help")):
        shown = run_cli(*args)
        assert shown.returncode == 0
        for name, _, meaning in VARIABLES:  # every environment variable, with its meaning
            assert name in shown.stdout and meaning.split()[0] in shown.stdout
    assert "--port" in run_cli("serve", "--help").stdout


def test_an_unknown_argument_is_an_error_never_a_started_server(tmp_path: Path) -> None:
    env = make_server(tmp_path).env
    for args in (("--bogus",), ("serve", "--bogus"), ("frobnicate",), ("serve", "--port", "x")):
        result = run_cli(*args, env=env, timeout_s=15)
        assert result.returncode == 2, args
        assert "usage: comfyui-api" in result.stderr and "Uvicorn running" not in result.stderr


def test_host_and_port_flags_override_the_environment(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "comfyui_api", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT, env=server.env | {"HOST": "203.0.113.1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not listen on --host/--port")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
            assert response.json() == {
                "status": "starting",
                "comfyui": "starting",
                "comfyui_phase": "starting",
                "version": package_version(),
            }
            time.sleep(0.1)
        assert statuses[0] == 503 and statuses[-1] == 200
    finally:
        server.stop()


def test_with_nothing_configured_the_simulator_runs_and_says_so(tmp_path: Path) -> None:
    server = make_server(tmp_path)
    for name in ("CMD", "COMFY_HOME"):
        server.env.pop(name)
    server.start()
    try:
        server.wait_ready()
        health = httpx.get(server.url("/health"), timeout=5).json()
        assert (health["comfyui"], health["comfyui_phase"], health["version"]) == (
            "simulator",
            "ready",
            package_version(),
        )
        assert "running the bundled ComfyUI simulator" in server.logs()
    finally:
        server.stop()


def test_shell_completion_script_and_answers(tmp_path: Path) -> None:
    for shell in ("bash", "zsh", "fish"):
        script = run_cli("completion", shell)
        assert script.returncode == 0 and "comfyui-api" in script.stdout, script.stderr
    answers = tmp_path / "answers"

    def complete(line: str) -> list[str]:
        env = {"_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line))}
        done = run_cli(env={**env, "_ARGCOMPLETE_STDOUT_FILENAME": str(answers)})
        assert done.returncode == 0, done.stderr
        return [answer.strip() for answer in answers.read_text().split("\v")]

    assert complete("comfyui-api wor") == ["worker", "workflow"]
    assert {"convert", "inputs"} <= set(complete("comfyui-api workflow "))
    assert "--status" in complete("comfyui-api jobs list --st")
