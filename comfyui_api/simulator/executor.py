"""Running one prompt: cache lookup, node by node execution, frames, errors and the history entry.

Owns the per-prompt message sequence (execution_start, execution_cached, executing/executed per node,
execution_success | execution_error | execution_interrupted) exactly as ComfyUI's PromptExecutor emits it.
Runs on the execution thread; must not touch HTTP.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from typing import Any

from comfyui_api.simulator.cache import ExecutionCache, Uncacheable
from comfyui_api.simulator.config import SimulatorConfig
from comfyui_api.simulator.graph import DependencyCycleError, ExecutionList, is_link
from comfyui_api.simulator.hub import SocketHub
from comfyui_api.simulator.nodes.spec import InterruptProcessingError, NodeContext, NodeSpec
from comfyui_api.simulator.paths import Folders
from comfyui_api.simulator.progress import NodeProgress, PromptProgress
from comfyui_api.simulator.validation import type_name

log = logging.getLogger("comfyui_api.simulator")


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


class _NodeFailed(Exception):
    def __init__(self, details: dict[str, Any], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.details = details
        self.cause = cause


class PromptExecutor:
    def __init__(
        self, registry: dict[str, NodeSpec], folders: Folders, config: SimulatorConfig, hub: SocketHub
    ) -> None:
        self._registry = registry
        self._folders = folders
        self._config = config
        self._hub = hub
        self._interrupt = threading.Event()
        self.cache = ExecutionCache()
        self.success = True
        self.status_messages: list[tuple[str, dict[str, Any]]] = []
        self.history_result: dict[str, Any] = {"outputs": {}, "meta": {}}

    def request_interrupt(self) -> None:
        self._interrupt.set()

    def interrupted(self) -> bool:
        return self._interrupt.is_set()

    def _add_message(self, event: str, data: dict[str, Any], broadcast: bool) -> None:
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self._hub.client_id is not None or broadcast:
            self._hub.send_sync(event, data, self._hub.client_id)

    def execute(
        self, prompt: dict[str, Any], prompt_id: str, extra_data: dict[str, Any], execute_outputs: list[str]
    ) -> None:
        self._interrupt.clear()
        if not isinstance(extra_data, dict):  # a real ComfyUI would crash its worker here; treat it as empty
            extra_data = {}
        self._hub.client_id = extra_data.get("client_id") if "client_id" in extra_data else None
        self.status_messages = []
        self.success = True
        self._add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        progress = PromptProgress(prompt_id, self._hub)
        self.cache.set_prompt(prompt, self._is_changed_memo(prompt), self._unique_id_nodes(prompt))
        cached = [node_id for node_id in prompt if self.cache.output(node_id) is not None]
        self._add_message("execution_cached", {"nodes": cached, "prompt_id": prompt_id}, broadcast=False)
        executed: set[str] = set()
        current_outputs = list(set(self.cache.node_ids()))
        order = ExecutionList(
            prompt,
            lambda n: self._registry[prompt[n]["class_type"]].output_node,
            lambda n: self.cache.output(n) is not None,
        )
        for node_id in execute_outputs:
            order.add_node(node_id)
        try:
            while not order.is_empty():
                try:
                    node_id = order.stage_next()
                except DependencyCycleError as ex:
                    blamed = order.pending_ids()[0]
                    raise _NodeFailed(
                        {
                            "node_id": blamed,
                            "exception_message": str(ex),
                            "exception_type": "graph.DependencyCycleError",
                            "traceback": [],
                            "current_inputs": [],
                        },
                        ex,
                    ) from ex
                self._run_node(prompt, prompt_id, node_id, extra_data, executed, progress)
                order.complete_staged()
        except _NodeFailed as failure:
            self.success = False
            self._report_failure(prompt, prompt_id, current_outputs, executed, failure)
        else:
            self._add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        self.history_result = self._history_result()
        self._hub.last_node_id = None

    def _history_result(self) -> dict[str, Any]:
        outputs: dict[str, Any] = {}
        meta: dict[str, Any] = {}
        for node_id in set(self.cache.node_ids()):
            entry = self.cache.ui(node_id)
            if entry is not None:
                outputs[node_id] = entry["output"]
                meta[node_id] = entry["meta"]
        return {"outputs": outputs, "meta": meta}

    def _report_failure(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        current_outputs: list[str],
        executed: set[str],
        failure: _NodeFailed,
    ) -> None:
        node_id = failure.details["node_id"]
        message = {
            "prompt_id": prompt_id,
            "node_id": node_id,
            "node_type": prompt[node_id]["class_type"],
            "executed": list(executed),
        }
        if isinstance(failure.cause, InterruptProcessingError):
            self._add_message("execution_interrupted", message, broadcast=True)
            return
        message.update(
            exception_message=failure.details["exception_message"],
            exception_type=failure.details["exception_type"],
            traceback=failure.details["traceback"],
            current_inputs=failure.details["current_inputs"],
            current_outputs=list(current_outputs),
        )
        self._add_message("execution_error", message, broadcast=False)

    def _run_node(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        node_id: str,
        extra_data: dict[str, Any],
        executed: set[str],
        progress: PromptProgress,
    ) -> None:
        class_type = prompt[node_id]["class_type"]
        spec = self._registry[class_type]
        client_id = self._hub.client_id
        if self.cache.output(node_id) is not None:
            if client_id is not None:
                cached_ui = self.cache.ui(node_id) or {}
                self._hub.send_sync(
                    "executed",
                    {
                        "node": node_id,
                        "display_node": node_id,
                        "output": cached_ui.get("output"),
                        "prompt_id": prompt_id,
                    },
                    client_id,
                )
            progress.finish(node_id)
            return
        inputs_used: dict[str, list[Any]] | None = None
        try:
            progress.start(node_id)
            inputs_used = self._input_data(prompt, node_id, spec, extra_data)
            if client_id is not None:
                self._hub.last_node_id = node_id
                self._hub.send_sync(
                    "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, client_id
                )
            reporter = NodeProgress(node_id, progress, self._hub, self.interrupted)
            ctx = NodeContext(
                node_id=node_id,
                folders=self._folders,
                config=self._config,
                progress=reporter,
                state=self.cache.state(node_id, class_type),
                interrupted=self.interrupted,
            )
            outputs, ui = self._call(spec, ctx, inputs_used)
            if ui:
                meta = {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
                self.cache.set_ui(node_id, {"meta": meta, "output": ui})
                if client_id is not None:
                    self._hub.send_sync(
                        "executed",
                        {"node": node_id, "display_node": node_id, "output": ui, "prompt_id": prompt_id},
                        client_id,
                    )
            self.cache.set_output(node_id, outputs)
        except InterruptProcessingError as iex:
            log.info("Processing interrupted")
            raise _NodeFailed({"node_id": node_id}, iex) from iex
        except Exception as ex:
            typ, _, tb = sys.exc_info()
            formatted = {name: [_format_value(v) for v in values] for name, values in (inputs_used or {}).items()}
            log.error("!!! Exception during processing !!! %s", ex)
            log.error(traceback.format_exc())
            raise _NodeFailed(
                {
                    "node_id": node_id,
                    "exception_message": f"{ex}\n",
                    "exception_type": type_name(typ or type(ex)),
                    "traceback": traceback.format_tb(tb),
                    "current_inputs": formatted,
                },
                ex,
            ) from ex
        progress.finish(node_id)
        executed.add(node_id)

    def _input_data(
        self, prompt: dict[str, Any], node_id: str, spec: NodeSpec, extra_data: dict[str, Any]
    ) -> dict[str, list[Any]]:
        """Each input as a list of values: linked outputs from the cache, literals wrapped, hidden ones added."""
        class_inputs = spec.input_types(self._folders)
        data: dict[str, list[Any]] = {}
        inputs = prompt[node_id]["inputs"]
        for name in inputs:
            value = inputs[name]
            known = any(name in class_inputs.get(c, {}) for c in ("required", "optional", "hidden"))
            if is_link(value):
                upstream = self.cache.output(value[0])
                if upstream is None or value[1] >= len(upstream):
                    data[name] = [None]
                else:
                    data[name] = upstream[int(value[1])]
            elif known:
                data[name] = [value]
        for name, kind in spec.hidden.items():
            if kind == "PROMPT":
                data[name] = [prompt]
            elif kind == "EXTRA_PNGINFO":
                data[name] = [extra_data.get("extra_pnginfo")]
            elif kind == "UNIQUE_ID":
                data[name] = [node_id]
        return data

    def _call(self, spec: NodeSpec, ctx: NodeContext, data: dict[str, list[Any]]) -> tuple[list[Any], dict[str, Any]]:
        """Map the node over its input lists (one call per element of the longest list), then merge results."""
        longest = max((len(v) for v in data.values()), default=0)
        calls = (
            [{}] if longest == 0 else [{k: v[i if len(v) > i else -1] for k, v in data.items()} for i in range(longest)]
        )
        results: list[Any] = []
        uis: list[dict[str, Any]] = []
        for args in calls:
            ctx.check_interrupt()
            returned = spec.execute(ctx, **args)
            if isinstance(returned, dict):
                if "ui" in returned:
                    uis.append(returned["ui"])
                if "result" in returned:
                    results.append(returned["result"])
            else:
                results.append(returned)
        outputs = [[r[i] for r in results] for i in range(len(results[0]))] if results else []
        ui = {key: [item for part in uis for item in part[key]] for key in uis[0]} if uis else {}
        return outputs, ui

    def _is_changed_memo(self, prompt: dict[str, Any]) -> Any:
        memo: dict[str, Any] = {}

        def is_changed(node_id: str) -> Any:
            if node_id not in memo:
                memo[node_id] = self._is_changed(prompt, node_id)
            return memo[node_id]

        return is_changed

    def _is_changed(self, prompt: dict[str, Any], node_id: str) -> Any:
        spec = self._registry.get(prompt[node_id].get("class_type"))
        if spec is None or spec.is_changed is None:
            return False
        if "is_changed" in prompt[node_id]:
            return prompt[node_id]["is_changed"]
        inputs = prompt[node_id].get("inputs", {})
        known = {**spec.required, **spec.optional}
        args = {name: (None if is_link(value) else value) for name, value in inputs.items() if name in known}
        ctx = NodeContext(
            node_id=node_id,
            folders=self._folders,
            config=self._config,
            progress=_Silent(),
            state={},
            interrupted=lambda: False,
        )
        # ComfyUI stores the value on the prompt's node; it then shows in the `prompt` metadata of outputs.
        try:
            value: Any = [spec.is_changed(ctx, **args)]
        except Exception as ex:
            log.warning("WARNING: %s", ex)
            prompt[node_id]["is_changed"] = float("nan")
            return Uncacheable()
        prompt[node_id]["is_changed"] = value
        return value

    def _unique_id_nodes(self, prompt: dict[str, Any]) -> set[str]:
        out = set()
        for node_id, node in prompt.items():
            spec = self._registry.get(str(node.get("class_type"))) if isinstance(node, dict) else None
            if spec is not None and "UNIQUE_ID" in spec.hidden.values():
                out.add(node_id)
        return out


class _Silent:
    def update(self, value: int, total: int, preview: Any = None) -> None:
        return None
