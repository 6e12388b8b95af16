"""UI-format workflows accepted wherever a graph is: `UiWorkflows.to_api(graph)` converts one with the running
ComfyUI's node definitions (`/object_info`, fetched once per ComfyUI start) and leaves an API-format graph as it is.
A workflow that cannot be converted is a 400 naming the node (`prompt.nodes.<id>`) and suggesting Export (API)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.errors import InvalidRequest
from comfyui_api.workflows.ui_format import ConversionError, ui_to_api

FetchDefinitions = Callable[[], Awaitable[dict[str, Any]]]


class UiWorkflows:
    def __init__(self, fetch_definitions: FetchDefinitions):
        self._fetch = fetch_definitions
        self._definitions: dict[str, Any] | None = None
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """ComfyUI (re)started: its nodes may have changed (a custom node installed)."""
        self._definitions = None

    async def to_api(self, graph: dict[str, Any], *, field: str = "prompt") -> dict[str, Any]:
        if not is_ui_format(graph):
            return graph
        definitions = await self._node_definitions()
        try:
            return ui_to_api(graph, definitions)
        except ConversionError as exc:
            where = f"{field}.nodes.{exc.node_id}" if exc.node_id is not None else field
            raise InvalidRequest(
                f"a workflow in the editor's format could not be converted: {exc} "
                "(Workflow > Export (API) in the editor writes the format ComfyUI runs)",
                field=where,
            ) from None

    async def _node_definitions(self) -> dict[str, Any]:
        async with self._lock:
            if self._definitions is None:
                self._definitions = await self._fetch()
            return self._definitions
