"""One overall percentage (0..100, never decreasing) for a job, from ComfyUI's node and step events.

Each node weighs 1, a sampler weighs its step count, so a 30-step KSampler dominates as it does in wall time.
Pure bookkeeping: no I/O, no ComfyUI message types (the runner feeds plain values).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def node_weight(node: Any) -> float:
    """1 for an ordinary node; `steps` for a node with a literal positive integer `steps` input (samplers)."""
    inputs = node.get("inputs") if isinstance(node, Mapping) else None
    steps = inputs.get("steps") if isinstance(inputs, Mapping) else None
    if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
        return float(steps)
    return 1.0


class ProgressTracker:
    """Feed it `cached`, `executing` and `step` as frames arrive; read `percent`."""

    def __init__(self, graph: Mapping[str, Any]):
        self._weights = {str(node_id): node_weight(node) for node_id, node in graph.items()}
        self._total = sum(self._weights.values()) or 1.0
        self._done: set[str] = set()
        self._current: str | None = None
        self._current_fraction = 0.0
        self._percent = 0.0

    @property
    def percent(self) -> float:
        return self._percent

    def cached(self, node_ids: Iterable[str]) -> float:
        """Nodes ComfyUI reused from its cache count as done."""
        self._done.update(node_id for node_id in node_ids if node_id in self._weights)
        return self._update()

    def executing(self, node_id: str) -> float:
        """A node started: the previous one is finished."""
        self._finish_current()
        if node_id in self._weights and node_id not in self._done:
            self._current = node_id
            self._current_fraction = 0.0
        return self._update()

    def step(self, node_id: str | None, value: float, maximum: float) -> float:
        """A step of a node (a sampler step, a ProgressBar update)."""
        if node_id is not None and node_id != self._current and node_id in self._weights:
            self.executing(node_id)
        if maximum > 0 and self._current is not None:
            self._current_fraction = min(1.0, max(self._current_fraction, value / maximum))
        return self._update()

    def finished(self) -> float:
        self._finish_current()
        self._percent = 100.0
        return self._percent

    def _finish_current(self) -> None:
        if self._current is not None:
            self._done.add(self._current)
        self._current = None
        self._current_fraction = 0.0

    def _update(self) -> float:
        done = sum(self._weights[node_id] for node_id in self._done)
        if self._current is not None:
            done += self._weights[self._current] * self._current_fraction
        self._percent = max(self._percent, min(100.0, round(100.0 * done / self._total, 2)))
        return self._percent
