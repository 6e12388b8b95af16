"""A job's progress on a terminal: one line redrawn in place on a TTY (queue position, overall percent, current
node, elapsed), plain lines at each change of state or every tenth of the way when the output is not a TTY."""

from __future__ import annotations

import time
from typing import Any, TextIO

from comfyui_api.client.model import Event

_BAR_WIDTH = 24


class ProgressView:
    def __init__(self, job_id: str, stream: TextIO, *, tty: bool | None = None):
        self._job_id = job_id
        self._stream = stream
        self._tty = stream.isatty() if tty is None else tty
        self._started = time.monotonic()
        self._state = "queued"
        self._position: int | None = None
        self._percent = 0.0
        self._node = ""
        self._last_plain: tuple[str, str, int] | None = None
        self._drawn = False

    def update(self, event: Event) -> None:
        data: Any = event.data if isinstance(event.data, dict) else {}
        if event.name == "queued":
            self._state, self._position = "queued", data.get("position")
        elif event.name == "started":
            self._state = "running"
        elif event.name == "executing":
            self._state = "running"
            node = data.get("node")
            self._node = f"{data.get('class_type') or 'node'} ({node})" if node else ""
        elif event.name == "progress":
            self._state = "running"
            self._percent = max(self._percent, float(data.get("percent") or 0.0))
        elif event.name == "complete":
            self._state, self._percent = "completed", 100.0
        elif event.name == "failed":
            self._state = "failed"
        else:
            return
        self._show()

    def finish(self) -> None:
        """End the redrawn line (so what follows starts on its own line)."""
        if self._tty and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def _line(self) -> str:
        elapsed = int(time.monotonic() - self._started)
        clock = f"{elapsed // 60:02d}:{elapsed % 60:02d}"
        if self._state == "queued":
            where = f"queued, position {self._position}" if self._position is not None else "queued"
            return f"{self._job_id}  {where}  {clock}"
        filled = round(self._percent / 100 * _BAR_WIDTH)
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        return f"{self._job_id}  [{bar}] {self._percent:5.1f}%  {self._state}  {self._node}  {clock}".rstrip()

    def _show(self) -> None:
        if self._tty:
            self._stream.write("\r\x1b[K" + self._line())
            self._drawn = True
        else:
            key = (self._state, self._node, int(self._percent // 10))
            if key == self._last_plain:
                return
            self._last_plain = key
            self._stream.write(self._line() + "\n")
        self._stream.flush()
