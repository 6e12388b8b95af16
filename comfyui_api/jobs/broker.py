"""Per-job event fan-out with replay: every event a job emits gets a sequence number (1, 2, ...) and goes into a
bounded log; any number of subscribers read the log from any point, during the job or after it, and follow it live.

Publishing never blocks and never waits for a subscriber: a slow reader that falls behind the bound skips the
droppable events it missed (progress, previews), never a milestone or the terminal event. No I/O, no HTTP.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from comfyui_api.jobs.model import (
    JobCompleted,
    JobEvent,
    JobFailed,
    NodeExecuting,
    NodeStates,
    PreviewProduced,
    ProgressUpdated,
)

# Kinds a reader may miss when it falls too far behind; the newest value of each supersedes the older ones.
_DROPPABLE = (PreviewProduced, ProgressUpdated, NodeExecuting, NodeStates)
# Kinds that wake no reader: they go out with the next event (ComfyUI sends its per-node state just before the
# progress frame it goes with). Fifty SSE readers, which show none of them, would otherwise wake for nothing.
_QUIET = (NodeStates,)
_STATES_LOOKBACK = 8  # how far back the previous per-node snapshot is looked for (it is one or two events back)
DEFAULT_REPLAY_EVENTS = 512
# Previews are big (a base64 image each): only the newest few are kept for replay.
DEFAULT_REPLAY_PREVIEWS = 4


@dataclass(slots=True)
class SequencedEvent:
    seq: int  # 1-based, per job; what SSE clients send back as Last-Event-ID
    event: JobEvent
    # The event as a reader encoded it, kept so that every other reader of the same event reuses the bytes (one
    # encode per event, not one per subscriber). Set by the first reader; readers of one kind agree on the format.
    # The terminal event's bytes (they may carry the outputs) are let go when its last reader has finished.
    encoded: bytes | None = None


class JobEventLog:
    """The events of one job. `publish` from the job's task; `follow` from any number of readers."""

    def __init__(
        self, job_id: str, *, max_events: int = DEFAULT_REPLAY_EVENTS, max_previews: int = DEFAULT_REPLAY_PREVIEWS
    ):
        self.job_id = job_id
        self._max_events = max(8, max_events)
        self._max_previews = max_previews
        self._log: deque[SequencedEvent] = deque()
        self._seq = 0
        self._changed = asyncio.Event()
        self._terminal: SequencedEvent | None = None
        self._previews = 0  # how many previews the log holds
        self._followers = 0  # readers inside `follow` now

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def ended(self) -> bool:
        return self._terminal is not None

    def publish(self, event: JobEvent) -> None:
        """Append one event (ignored once the job has ended). Never blocks."""
        if self._terminal is not None:
            return
        self._seq += 1
        item = SequencedEvent(self._seq, event)
        if isinstance(event, JobCompleted | JobFailed):
            self._terminal = item
        self._log.append(item)
        self._trim()
        if isinstance(event, _QUIET):
            return
        self._changed.set()
        self._changed = asyncio.Event()  # readers waiting on the old one wake; later waits use this one

    def _trim(self) -> None:
        if isinstance(self._log[-1].event, NodeStates):
            # A snapshot of every node's state: the newest makes the older ones moot (it comes with each step).
            for back in range(2, min(len(self._log), _STATES_LOOKBACK) + 1):
                if isinstance(self._log[-back].event, NodeStates):
                    del self._log[-back]
                    break
        if isinstance(self._log[-1].event, PreviewProduced):
            self._previews += 1
            if self._previews > self._max_previews:
                oldest = next(i for i, item in enumerate(self._log) if isinstance(item.event, PreviewProduced))
                del self._log[oldest]
                self._previews -= 1
        while len(self._log) > self._max_events:
            victim = next((i for i, item in enumerate(self._log) if isinstance(item.event, _DROPPABLE)), None)
            if victim is None:
                break  # only milestones left: they are few, keep them all
            if isinstance(self._log[victim].event, PreviewProduced):
                self._previews -= 1
            del self._log[victim]

    def replay(self, after_seq: int = 0) -> list[SequencedEvent]:
        """The events kept so far with a sequence number above `after_seq`."""
        if not self._log or self._log[-1].seq <= after_seq:
            return []  # a live reader's usual case: nothing new, without walking the log
        newer: list[SequencedEvent] = []
        for item in reversed(self._log):  # a live reader wants the last one or two: walk from the newest end
            if item.seq <= after_seq:
                break
            newer.append(item)
        newer.reverse()
        return newer

    async def follow(
        self, after_seq: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncIterator[SequencedEvent | None]:
        """Events after `after_seq`: first those kept, then live ones, until the terminal event (included). With
        `heartbeat_s`, yields None after that long without an event (for keep-alives)."""
        batches = self.follow_batches(after_seq, heartbeat_s=heartbeat_s)
        try:
            async for batch in batches:
                if batch is None:
                    yield None
                    continue
                for item in batch:
                    yield item
        finally:
            await batches.aclose()  # at once, not when collected: it counts its reader until closed

    async def follow_batches(
        self, after_seq: int = 0, *, heartbeat_s: float | None = None
    ) -> AsyncGenerator[list[SequencedEvent] | None, None]:
        """`follow` a batch at a time: all the events that came since the reader last looked, in one list (a burst
        of events then costs a writer one write, not one per event). Never an empty list; None as in `follow`."""
        self._followers += 1
        position = after_seq
        try:
            while True:
                batch = self.replay(position)
                if batch:
                    terminal = self._terminal
                    if terminal is not None and terminal.seq <= batch[-1].seq:
                        yield batch
                        return
                    position = batch[-1].seq
                    yield batch
                    continue
                if self._terminal is not None and self._terminal.seq <= position:
                    return
                changed = self._changed
                if self.last_seq > position:
                    continue
                try:
                    async with asyncio.timeout(heartbeat_s):
                        await changed.wait()
                except TimeoutError:
                    yield None
        finally:
            self._followers -= 1
            if not self._followers and self._terminal is not None:
                self._terminal.encoded = None
