"""Starting and stopping test servers as subprocesses on loopback: a free port, a readiness wait with a deadline,
the server's log kept for failure messages, and a stop that always reaps the process.

    with serve_python_module("tests.servers.file_server", ["--root", str(root)], log_dir=tmp) as server:
        ... server.url ...
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port that was free a moment ago (for servers that cannot bind port 0 and report it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def stop(process: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace_s)
    if process.stdout is not None:
        process.stdout.close()


def _fail(server: ServerProcess, why: str) -> None:
    stop(server.process)
    raise RuntimeError(f"{why}; log {server.log_path}:\n{server.log_tail()}")


@contextlib.contextmanager
def serve_on_port(
    argv: Sequence[str],
    *,
    port: int,
    log_path: Path,
    timeout_s: float = 30.0,
    env: dict[str, str] | None = None,
    stop_grace_s: float = 5.0,
) -> Iterator[ServerProcess]:
    """Run `argv` (which must listen on 127.0.0.1:`port`) until the port accepts connections."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    try:
        process = subprocess.Popen(
            list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env, start_new_session=True
        )
    finally:
        log.close()
    server = ServerProcess(process, port, log_path)
    deadline = time.monotonic() + timeout_s
    while not port_is_open(port):
        if process.poll() is not None:
            _fail(server, f"{argv[0]} exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            _fail(server, f"{argv[0]} did not listen on port {port} within {timeout_s:g} s")
        time.sleep(0.05)
    try:
        yield server
    finally:
        stop(process, grace_s=stop_grace_s)


@contextlib.contextmanager
def serve_python_module(
    module: str, args: Sequence[str], *, log_dir: Path, timeout_s: float = 30.0
) -> Iterator[ServerProcess]:
    """Run `python -m module args...`; the module binds port 0 and prints `LISTENING <port>` on stdout."""
    log_path = log_dir / f"{module.rsplit('.', 1)[-1]}-{os.getpid()}-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")  # noqa: SIM115 - the child writes to it for its whole life
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    finally:
        log.close()
    server = ServerProcess(process, 0, log_path)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline().decode(errors="replace").strip() if ready else ""
    if not line.startswith("LISTENING "):
        _fail(server, f"{module} did not report its port within {timeout_s:g} s (got {line!r})")
    server.port = int(line.split()[1])
    try:
        yield server
    finally:
        stop(process)
