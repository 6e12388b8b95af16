"""ComfyProcess with tiny Python scripts standing in for ComfyUI: readiness, exit detection, log capture, stop."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.comfy.process import LOG_PREFIX, ComfyProcess
from comfyui_api.errors import ComfyUnavailable
from tests.servers.processes import free_port

SERVER_SCRIPT = """
import http.server, signal, sys, time
port = int(sys.argv[1])
mode = sys.argv[2] if len(sys.argv) > 2 else "normal"
print("hello from fake comfyui", flush=True)
print("loading\\r 50%\\r100%", flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
else:
    def bye(*a):
        print("got SIGTERM, bye", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
if mode == "slow":
    time.sleep(60)

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/system_stats" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")
    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_comfy.py"
    path.write_text(textwrap.dedent(SERVER_SCRIPT))
    return path


@pytest.fixture
async def client_and_port() -> AsyncIterator[tuple[ComfyClient, int]]:
    port = free_port()
    client = ComfyClient(f"http://127.0.0.1:{port}", timeout_s=2)
    yield client, port
    await client.aclose()


async def test_ready_logs_and_graceful_stop(
    script: Path, client_and_port: tuple[ComfyClient, int], caplog: pytest.LogCaptureFixture
) -> None:
    client, port = client_and_port
    caplog.set_level(logging.INFO, logger="comfyui_api.comfy.process")
    process = ComfyProcess([sys.executable, str(script), str(port)], script.parent)
    await process.start()
    try:
        await process.wait_ready(client, interval_s=0.05, max_tries=400)
        assert process.running and process.returncode is None
        assert await client.is_responding()
    finally:
        returncode = await process.stop(grace_s=10)
    assert returncode == 0
    assert not process.running
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith(LOG_PREFIX)]
    assert f"{LOG_PREFIX}hello from fake comfyui" in lines
    assert f"{LOG_PREFIX}a warning on stderr" in lines
    assert f"{LOG_PREFIX}100%" in lines  # carriage-return redraws collapse to the final state
    assert f"{LOG_PREFIX}got SIGTERM, bye" in lines
    assert "got SIGTERM, bye" in process.log_tail


async def test_exit_during_startup_raises_with_last_lines(
    tmp_path: Path, client_and_port: tuple[ComfyClient, int]
) -> None:
    client, _ = client_and_port
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nprint('importing torch', flush=True)\nsys.exit('CUDA not available')\n")
    process = ComfyProcess([sys.executable, str(crash)], tmp_path)
    await process.start()
    with pytest.raises(ComfyUnavailable) as caught:
        await process.wait_ready(client, interval_s=0.05, max_tries=1000)
    assert "exited with code 1" in caught.value.message
    assert "importing torch" in caught.value.message
    assert "CUDA not available" in caught.value.message
    assert await process.wait_exit() == 1
    assert await process.stop() == 1


async def test_tries_run_out(script: Path, client_and_port: tuple[ComfyClient, int]) -> None:
    client, port = client_and_port
    process = ComfyProcess([sys.executable, str(script), str(port), "slow"], script.parent)
    await process.start()
    try:
        with pytest.raises(ComfyUnavailable, match="did not answer within 3 checks"):
            await process.wait_ready(client, interval_s=0.05, max_tries=3)
        assert process.running
    finally:
        await process.stop(grace_s=10)


async def test_stubborn_process_is_killed_after_grace(script: Path, client_and_port: tuple[ComfyClient, int]) -> None:
    client, port = client_and_port
    process = ComfyProcess([sys.executable, str(script), str(port), "stubborn"], script.parent)
    await process.start()
    await process.wait_ready(client, interval_s=0.05, max_tries=400)
    assert await process.stop(grace_s=0.3) == -9
    assert "ignoring SIGTERM" in process.log_tail


async def test_exit_is_detected_and_children_are_swept(tmp_path: Path) -> None:
    parent = tmp_path / "parent.py"
    parent.write_text(
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
        " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "print(child.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    process = ComfyProcess([sys.executable, str(parent)], tmp_path)
    await process.start()
    for _ in range(500):
        if process.log_tail:
            break
        await asyncio.sleep(0.02)
    child_pid = int(process.log_tail[0])
    assert process.pid is not None
    os.kill(process.pid, 9)  # ComfyUI crashes; its child lives on in the group
    assert await process.wait_exit() == -9
    process.kill_group()
    for _ in range(500):  # the child is reaped by init once killed; wait until it is gone
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the orphaned child survived kill_group()")
    await process.stop()


@pytest.mark.parametrize("stopped_by", ["stop", "someone else"])
async def test_a_sigterm_death_is_a_warning_unless_stop_asked_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, stopped_by: str
) -> None:
    """Like a real ComfyUI, this child has no SIGTERM handler: it ends with -15."""
    caplog.set_level(logging.INFO, logger="comfyui_api.comfy.process")
    process = ComfyProcess([sys.executable, "-c", "print('up', flush=True); import time; time.sleep(60)"], tmp_path)
    await process.start()
    for _ in range(500):
        if process.log_tail:
            break
        await asyncio.sleep(0.02)
    if stopped_by == "stop":
        assert await process.stop() == -15
    else:
        assert process.pid is not None
        os.kill(process.pid, 15)
        assert await process.wait_exit() == -15
        await process.stop()
    [record] = [r for r in caplog.records if "exited with code -15" in r.getMessage()]
    assert record.levelno == (logging.INFO if stopped_by == "stop" else logging.WARNING)


async def test_missing_executable_is_comfy_unavailable(tmp_path: Path) -> None:
    process = ComfyProcess(["/nonexistent/comfyui-binary"], tmp_path)
    with pytest.raises(ComfyUnavailable, match="could not launch ComfyUI"):
        await process.start()
    assert await process.stop() is None


async def test_empty_command_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ComfyUnavailable, match="CMD is empty"):
        await ComfyProcess([], tmp_path).start()
