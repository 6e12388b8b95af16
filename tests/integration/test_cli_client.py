"""`comfyui-api run` and `comfyui-api jobs` against a real server (simulator as ComfyUI): outputs written, --json,
a progress bar redrawn in place in a pseudo-terminal and plain lines otherwise, Ctrl-C cancels the job, a refused
workflow exits 1 naming the field, a malformed flag exits 2, and the jobs subcommands."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.server import REPO_ROOT, ServerProcess, image_graph, running_server, sampler_graph

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("cli-client"))


def cli(server: ServerProcess, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMFYUI_API_URL": server.base_url}
    return subprocess.run(
        [sys.executable, "-m", "comfyui_api", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
        timeout=timeout_s,
    )  # fmt: skip


def workflow_file(tmp_path: Path, graph: dict[str, object]) -> str:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(graph))
    return str(path)


def test_run_writes_the_outputs_and_prints_json(server: ServerProcess, tmp_path: Path) -> None:
    run = cli(
        server,
        "run",
        workflow_file(tmp_path, image_graph()),
        "--set",
        "1.inputs.width=24",
        "--out",
        str(tmp_path / "out"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    [output] = result["outputs"]
    assert result["status"] == "completed" and output["content_type"] == "image/png"
    assert Path(output["path"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Path(output["path"]).parent == tmp_path / "out"
    assert "100.0%" in run.stderr and "\r" not in run.stderr  # not a terminal: plain lines


def test_run_in_a_terminal_redraws_one_progress_line(server: ServerProcess, tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    env = {**os.environ, "COMFYUI_API_URL": server.base_url}
    command = [
        sys.executable,
        "-m",
        "comfyui_api",
        "run",
        workflow_file(tmp_path, sampler_graph(30)),
        "--out",
        str(tmp_path),
    ]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdin=follower, stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(10) == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert text.count("\r\x1b[K") >= 3  # redrawn in place, not one line per event
    assert "KSampler (3)" in text and "100.0%" in text
    assert "completed " in text and ".png" in text
    assert len(list(tmp_path.glob("*.png"))) == 1


def test_ctrl_c_cancels_the_job(server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "COMFYUI_API_URL": server.base_url}
    command = [sys.executable, "-m", "comfyui_api", "run", workflow_file(tmp_path, sampler_graph(3000, seed=9))]
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 30
    running: list[dict[str, object]] = []
    while not running and time.monotonic() < deadline:
        running = httpx.get(server.url("/jobs"), params={"status": "running"}, timeout=5).json()["jobs"]
        time.sleep(0.1)
    assert running, "the job never started"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "cancelled" in stderr
    assert httpx.get(server.url(f"/jobs/{running[0]['id']}"), timeout=5).json()["status"] == "cancelled"


def test_a_refused_workflow_exits_1_naming_the_field_and_bad_usage_exits_2(
    server: ServerProcess, tmp_path: Path
) -> None:
    escape = {"1": {"class_type": "LoadImage", "inputs": {"image": "/etc/passwd"}}}
    refused = cli(server, "run", workflow_file(tmp_path, escape))
    assert refused.returncode == 1
    assert "prompt.1.inputs.image" in refused.stderr
    malformed = cli(server, "run", workflow_file(tmp_path, image_graph()), "--set", "no-equals-sign")
    assert malformed.returncode == 2 and "--set" in malformed.stderr
    missing = cli(server, "run", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "missing.json" in missing.stderr
    unknown_flag = cli(server, "run", "x.json", "--colour", "red")
    assert unknown_flag.returncode == 2


def test_the_jobs_subcommands(server: ServerProcess, tmp_path: Path) -> None:
    submitted = cli(server, "run", workflow_file(tmp_path, sampler_graph(10)), "--async", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    watched = cli(server, "jobs", "watch", job_id)
    assert watched.returncode == 0 and watched.stdout.strip() == f"{job_id} completed"
    assert json.loads(cli(server, "jobs", "get", job_id).stdout)["status"] == "completed"
    listed = cli(server, "jobs", "list", "--status", "completed", "--json")
    assert job_id in [job["id"] for job in json.loads(listed.stdout)["jobs"]]
    assert job_id in cli(server, "jobs", "list").stdout
    downloaded = cli(server, "jobs", "download", job_id, "--out", str(tmp_path / "dl"))
    assert downloaded.returncode == 0
    assert Path(downloaded.stdout.strip()).read_bytes()[:4] == b"\x89PNG"
    again = cli(server, "jobs", "cancel", job_id)
    assert again.returncode == 1 and "already ended" in again.stdout
    unknown = cli(server, "jobs", "get", "no-such-job")
    assert unknown.returncode == 1 and "job_not_found" in unknown.stderr
