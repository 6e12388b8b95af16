"""A Server-Sent Events parser fed line by line (the client's HTTP library splits the stream into lines)."""

from __future__ import annotations

import json

from comfyui_api.client.model import Event


class EventParser:
    """`feed(line)` returns the event a blank line completes, else None. Comment lines (heartbeats) are skipped."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> Event | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            self._name = value
        elif key == "data":
            self._data.append(value)
        elif key == "id":
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        if not self._data:
            self._name, self._id = "message", None
            return None
        text = "\n".join(self._data)
        try:
            data = json.loads(text)
        except ValueError:
            data = text
        event = Event(self._name, data, self._id)
        if self._id is not None:
            self.last_id = self._id
        self._name, self._data, self._id = "message", [], None
        return event
