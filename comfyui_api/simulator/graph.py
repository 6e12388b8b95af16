"""Execution order: ComfyUI's topological dissolve of the prompt graph, node by node.

Owns which node runs next (output nodes first when ready, then nodes feeding an output, then insertion
order), so frames come out in the same order as a real ComfyUI. Must not run nodes or hold results.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def is_link(value: Any) -> bool:
    """`["<node id>", <output index>]`; anything else in an input is a literal."""
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], (int, float))
    )


class DependencyCycleError(Exception):
    pass


class ExecutionList:
    """Nodes still to run, with how many unfinished inputs block each and whom each one blocks."""

    def __init__(
        self, prompt: dict[str, Any], is_output: Callable[[str], bool], is_cached: Callable[[str], bool]
    ) -> None:
        self._prompt = prompt
        self._is_output = is_output
        self._is_cached = is_cached
        self._pending: dict[str, bool] = {}
        self._block_count: dict[str, int] = {}
        self._blocking: dict[str, dict[str, dict[Any, bool]]] = {}
        self._staged: str | None = None

    def is_empty(self) -> bool:
        return not self._pending

    def add_node(self, node_id: str) -> None:
        stack = [node_id]
        links: list[tuple[str, Any, str]] = []
        while stack:
            unique_id = stack.pop()
            if unique_id in self._pending:
                continue
            self._pending[unique_id] = True
            self._block_count[unique_id] = 0
            self._blocking[unique_id] = {}
            inputs = self._prompt[unique_id].get("inputs", {})
            for name in inputs:
                value = inputs[name]
                if is_link(value) and not self._is_cached(value[0]):
                    stack.append(value[0])
                    links.append((value[0], value[1], unique_id))
        for from_id, socket, to_id in links:
            self._add_strong_link(from_id, socket, to_id)

    def _add_strong_link(self, from_id: str, socket: Any, to_id: str) -> None:
        if self._is_cached(from_id):
            return
        self.add_node(from_id)
        if to_id not in self._blocking[from_id]:
            self._blocking[from_id][to_id] = {}
            self._block_count[to_id] += 1
        self._blocking[from_id][to_id][socket] = True

    def stage_next(self) -> str:
        """The node to run next; raises DependencyCycleError when nothing is ready."""
        assert self._staged is None
        ready = [n for n in self._pending if self._block_count[n] == 0]
        if not ready:
            raise DependencyCycleError("Dependency cycle detected")
        self._staged = self._pick(ready)
        return self._staged

    def _pick(self, ready: list[str]) -> str:
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self._blocking[node_id]):
                return node_id
        for node_id in ready:
            for blocked in self._blocking[node_id]:
                if any(self._is_output(b) for b in self._blocking[blocked]):
                    return node_id
        return ready[0]

    def complete_staged(self) -> None:
        node_id = self._staged
        assert node_id is not None
        del self._pending[node_id]
        for blocked in self._blocking[node_id]:
            self._block_count[blocked] -= 1
        del self._blocking[node_id]
        self._staged = None

    def pending_ids(self) -> list[str]:
        return list(self._pending)
