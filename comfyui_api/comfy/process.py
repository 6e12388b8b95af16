"""The ComfyUI child process: launch in its own process group (killed with the server, even on SIGKILL), log
capture, readiness wait, exit watch and stop.

Knows nothing about jobs or the websocket; the restart policy lives in `comfy/instance.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from comfyui_api.errors import ComfyUnavailable

logger = logging.getLogger(__name__)

LOG_PREFIX = "[comfyui] "
LINE_LIMIT_BYTES = 1024 * 1024
# After the process exits, give the pipes this long to drain so its last lines (often the crash reason) get logged.
DRAIN_TIMEOUT_S = 2.0
KILL_WAIT_S = 10.0


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGKILL when the server that launched it dies, even by SIGKILL, so that
    ComfyUI never outlives us holding its port. Elsewhere a no-op (stop() still signals the group)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ReadinessProbe(Protocol):
    async def is_responding(self) -> bool: ...


class ComfyProcess:
    """One launch of CMD. Create, `await start()`, then `wait_ready`, `wait_exit` or `stop`. Not restartable:
    a relaunch is a new ComfyProcess."""

    def __init__(
        self,
        cmd: Sequence[str],
        cwd: Path,
        *,
        env: Mapping[str, str] | None = None,
        log_tail_lines: int = 20,
        log: logging.Logger | None = None,
    ):
        self.cmd = tuple(cmd)
        self.cwd = cwd
        self._env = dict(env) if env is not None else None
        self._log = log or logger
        self._tail: deque[str] = deque(maxlen=log_tail_lines)
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._exit_task: asyncio.Task[int] | None = None
        self._stopping = False  # stop() was called: an exit by its SIGTERM is the one asked for

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the process has ended (negative: killed by that signal); None while running."""
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def log_tail(self) -> list[str]:
        """The last captured output lines, oldest first."""
        return list(self._tail)

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("this ComfyProcess was already started")
        if not self.cmd:
            raise ComfyUnavailable("no command to launch ComfyUI (CMD is empty)")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.cmd,
                cwd=self.cwd,
                env=self._env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # own process group: stop() signals ComfyUI and everything it spawned
                preexec_fn=_die_with_parent,
                limit=LINE_LIMIT_BYTES,
            )
        except OSError as exc:
            raise ComfyUnavailable(f"could not launch ComfyUI `{shlex.join(self.cmd)}` in {self.cwd}: {exc}") from exc
        self._log.info("launched ComfyUI (pid %d): %s", self._proc.pid, shlex.join(self.cmd))
        assert self._proc.stdout is not None and self._proc.stderr is not None
        self._readers = [
            asyncio.create_task(self._pump(self._proc.stdout), name="comfyui-stdout"),
            asyncio.create_task(self._pump(self._proc.stderr), name="comfyui-stderr"),
        ]
        self._exit_task = asyncio.create_task(self._watch(self._proc), name="comfyui-exit")

    async def _pump(self, stream: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT_BYTES; asyncio has already discarded it
                self._log.info("%s<line longer than %d bytes skipped>", LOG_PREFIX, LINE_LIMIT_BYTES)
                continue
            if not raw:
                return
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            # Progress bars redraw with carriage returns; keep only the final state of the line.
            segments = [segment for segment in text.split("\r") if segment.strip()]
            if not segments:
                continue
            self._tail.append(segments[-1])
            self._log.info("%s%s", LOG_PREFIX, segments[-1])

    async def _watch(self, proc: asyncio.subprocess.Process) -> int:
        returncode = await proc.wait()
        await asyncio.wait(self._readers, timeout=DRAIN_TIMEOUT_S)
        # A real ComfyUI has no SIGTERM handler: stopped by us, it ends "killed by SIGTERM" (-15), which is no fault.
        asked_for = self._stopping and returncode == -signal.SIGTERM
        level = logging.INFO if returncode == 0 or asked_for else logging.WARNING
        self._log.log(level, "ComfyUI (pid %d) exited with code %d", proc.pid, returncode)
        return returncode

    def _exit_task_or_fail(self) -> asyncio.Task[int]:
        if self._exit_task is None:
            raise RuntimeError("ComfyProcess.start() was not called")
        return self._exit_task

    async def wait_exit(self) -> int:
        """Wait until the process ends; returns its exit status. Cancelling the waiter leaves the process alone."""
        return await asyncio.shield(self._exit_task_or_fail())

    def describe_exit(self) -> str:
        tail = "\n".join(self._tail) or "<no output>"
        return f"ComfyUI exited with code {self.returncode} during start-up. Last output:\n{tail}"

    async def wait_ready(self, client: ReadinessProbe, interval_s: float, max_tries: int) -> None:
        """Poll `client.is_responding()` while the process lives; ComfyUnavailable on exit or when tries run out."""
        exit_task = self._exit_task_or_fail()
        for _ in range(max(1, max_tries)):
            if exit_task.done():
                raise ComfyUnavailable(self.describe_exit())
            if await client.is_responding():
                return
            # Sleep one interval, but notice an exit at once.
            await asyncio.wait({exit_task}, timeout=interval_s)
        if exit_task.done():
            raise ComfyUnavailable(self.describe_exit())
        tail = "\n".join(self._tail) or "<no output>"
        raise ComfyUnavailable(
            f"ComfyUI did not answer within {max_tries} checks {interval_s:g}s apart "
            f"(STARTUP_CHECK_MAX_TRIES x STARTUP_CHECK_INTERVAL_S). Last output:\n{tail}"
        )

    def signal_group(self, signum: int) -> None:
        """Send a signal to ComfyUI's whole process group (ignored when the group is gone)."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signum)  # start_new_session made the pid the group id

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the group (children that outlived ComfyUI)."""
        self.signal_group(signal.SIGKILL)

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the group, SIGKILL after grace_s; returns the exit status (None if never started)."""
        if self._proc is None or self._exit_task is None:
            return None
        if self._proc.returncode is None:
            self._stopping = True
            self.signal_group(signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await asyncio.shield(self._exit_task)
            except TimeoutError:
                self._log.warning("ComfyUI did not stop within %gs of SIGTERM; killing it", grace_s)
                self.kill_group()
                async with asyncio.timeout(KILL_WAIT_S):
                    await asyncio.shield(self._exit_task)
        self.kill_group()
        await asyncio.wait(self._readers, timeout=DRAIN_TIMEOUT_S)
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, self._exit_task, return_exceptions=True)
        return self._proc.returncode
