"""Resident-memory readings for memory tests: a thread sampling a process's RSS, and Linux /proc status fields
(VmRSS, VmHWM). Reads only; starts no process of its own.
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil


class RssSampler:
    """Samples the RSS of process `pid` (this process when None) every `interval_s` on a daemon thread while used as
    a context manager; `peak_bytes` is the highest value seen."""

    def __init__(self, pid: int | None = None, interval_s: float = 0.01):
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.peak_bytes = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/<pid>/status, e.g. VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def peak_rss_bytes(pid: int) -> int:
    """The kernel's peak resident set size of `pid` (VmHWM), in bytes."""
    return status_kib(pid, "VmHWM") * 1024
