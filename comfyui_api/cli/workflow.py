"""`comfyui-api workflow convert UI.json > API.json` (a workflow as the editor saves it, in the format ComfyUI runs)
and `comfyui-api workflow inputs WORKFLOW.json` (every input `run --set NODE.inputs.NAME=VALUE` can change).

Converting needs the node definitions of the ComfyUI that will run the workflow (which widget value is which input):
read from a server's `/object_info` (a comfyui-api server's `/comfyui` door by default, or a bare ComfyUI), or from
a file saved from it with `--object-info`. Exit codes as the other client commands: 0, 1 (could not convert, or the
server could not be asked), 2 (usage, unreadable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from comfyui_api.client import ClientError, ComfyUIClient
from comfyui_api.client.workflow import load_workflow, read_json_object
from comfyui_api.comfy.graph import is_ui_format
from comfyui_api.workflows.ui_format import ConversionError, ui_to_api
from comfyui_api.workflows.workflow import is_link

USAGE = 2
FAILED = 1
_DEFAULT_SERVER = "http://127.0.0.1:3000"


def add_workflow_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    workflow = commands.add_parser(
        "workflow", help="convert an editor-saved workflow to the API format; list what `run --set` can change"
    )
    actions = workflow.add_subparsers(dest="action", metavar="ACTION", required=True)
    convert = actions.add_parser(
        "convert",
        help="print the API format of a workflow saved from the editor (UI format)",
        description="Print (or write to --out) the API format of UI.json, as the editor's Workflow > Export (API) "
        "would. An API-format workflow is printed unchanged.",
    )
    convert.add_argument("workflow", metavar="UI.json")
    convert.add_argument("--out", "-o", metavar="FILE", help="write the API format here instead of to stdout")
    inputs = actions.add_parser(
        "inputs",
        help="list every input `run --set NODE.inputs.NAME=VALUE` can change",
        description="List the inputs of WORKFLOW.json that hold a value (not a link to another node): what "
        "`comfyui-api run --set` can change. A UI-format workflow is converted first.",
    )
    inputs.add_argument("workflow", metavar="WORKFLOW.json")
    inputs.add_argument("--json", action="store_true", help="print a JSON list of {key, node, class_type, value}")
    for action in (convert, inputs):
        source = action.add_mutually_exclusive_group()
        source.add_argument(
            "--comfyui",
            metavar="URL",
            help="where to read node definitions (GET <URL>/object_info) for a UI-format workflow "
            f"[default: $COMFYUI_API_URL/comfyui, else {_DEFAULT_SERVER}/comfyui]",
        )
        source.add_argument(
            "--object-info", metavar="FILE", help="node definitions saved from /object_info (no server asked)"
        )
        action.add_argument("--api-key", metavar="KEY", help="API key of that server [default: $COMFYUI_API_KEY]")


def _definitions(options: argparse.Namespace) -> dict[str, Any]:
    if options.object_info:
        return read_json_object(options.object_info, "/object_info answer")
    url = options.comfyui or (os.environ.get("COMFYUI_API_URL") or _DEFAULT_SERVER).rstrip("/") + "/comfyui"
    with ComfyUIClient(url, api_key=options.api_key or os.environ.get("COMFYUI_API_KEY")) as comfyui:
        return comfyui.object_info()


def api_format(document: dict[str, Any], options: argparse.Namespace) -> dict[str, Any]:
    """The workflow (as `load_workflow` reads it) in the API format; ConversionError if an editor-saved workflow
    cannot be converted."""
    if not is_ui_format(document):
        return document
    return ui_to_api(document, _definitions(options))


def settable_inputs(graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Each input that holds a value (not a link `[node, output]`), by node id (numbers in numeric order)."""
    found: list[dict[str, Any]] = []
    for node_id in sorted(graph, key=lambda key: (not key.isdigit(), int(key) if key.isdigit() else 0, key)):
        node = graph[node_id]
        if not isinstance(node, Mapping):
            continue
        for name, value in (node.get("inputs") or {}).items():
            if is_link(value):
                continue
            found.append(
                {
                    "key": f"{node_id}.inputs.{name}",
                    "node": node_id,
                    "class_type": node.get("class_type"),
                    "value": value,
                }
            )
    return found


def run_workflow_command(options: argparse.Namespace) -> int:
    try:
        document = load_workflow(options.workflow)
    except ValueError as exc:
        print(f"comfyui-api workflow: {exc}", file=sys.stderr)
        return USAGE
    try:
        graph = api_format(document, options)
    except ConversionError as exc:
        where = f" (node {exc.node_id})" if exc.node_id is not None else ""
        print(f"comfyui-api workflow: could not convert {options.workflow}{where}: {exc}", file=sys.stderr)
        return FAILED
    except ValueError as exc:  # an unreadable --object-info file
        print(f"comfyui-api workflow: {exc}", file=sys.stderr)
        return USAGE
    except ClientError as exc:
        print(f"comfyui-api workflow: could not read the node definitions: {exc}", file=sys.stderr)
        return FAILED
    if options.action == "convert":
        text = json.dumps(graph, indent=2, ensure_ascii=False) + "\n"
        if options.out:
            Path(options.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    rows = settable_inputs(graph)
    if options.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    width = max((len(row["key"]) for row in rows), default=0)
    for row in rows:
        shown = json.dumps(row["value"], ensure_ascii=False)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        print(f"{row['key'].ljust(width)}  = {shown}  ({row['class_type']})")
    return 0
