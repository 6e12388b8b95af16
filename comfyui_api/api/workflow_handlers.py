"""Litestar route handlers for the workflow catalog: POST /workflow/<route> takes `{"input": {...}}` plus every
option of POST /prompt, validates `input`, and hands the finished graph and the options to the app's `submit`.

Owns request validation of `input` and the endpoint's OpenAPI documentation; running the graph, decoding the /prompt
options and shaping the response belong to `submit`, so both endpoints behave the same.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body

from comfyui_api.errors import InvalidRequest
from comfyui_api.workflows.catalog import WorkflowCatalog
from comfyui_api.workflows.openapi import options_schema, request_doc
from comfyui_api.workflows.workflow import Workflow

WorkflowSubmit = Callable[[dict[str, Any], Any, Request[Any, Any, Any]], Awaitable[Any]]
"""`submit(graph, options, request)`: run `graph` as POST /prompt runs its body, and return that endpoint's response.

`options` is the request body without `input`, plus `"prompt": graph`, decoded into `options_type` (so it is a
POST /prompt request, ready for the same conversion to a job); without an `options_type` it is the plain dict
without `prompt`."""

_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")


def build_workflow_controllers(
    catalog: WorkflowCatalog,
    submit: WorkflowSubmit,
    *,
    options_type: Any = None,
    response_type: Any = Any,
    responses: Mapping[int, ResponseSpec] | None = None,
    path_prefix: str = "/workflow",
    tags: Sequence[str] = ("workflows",),
) -> list[HTTPRouteHandler]:
    """One POST handler per workflow, for the app's `route_handlers`.

    `options_type` is POST /prompt's request type (a msgspec Struct whose `prompt` field holds the graph); its
    fields are documented beside `input`. `response_type` and `responses` document what `submit` returns and the
    error responses, as on POST /prompt.
    """
    options = options_schema(options_type) if options_type is not None else None
    route = _RouteConfig(options_type, response_type, dict(responses or {}), path_prefix.rstrip("/"), list(tags))
    names: dict[str, int] = {}
    handlers = []
    for workflow in catalog:
        name = _identifier(workflow.route)
        names[name] = names.get(name, 0) + 1
        unique = name if names[name] == 1 else f"{name}_{names[name]}"  # `a-b` and `a_b` would share a name
        handlers.append(_route_handler(workflow, submit, options, route, unique))
    return handlers


@dataclass(frozen=True)
class _RouteConfig:
    options_type: Any
    response_type: Any
    responses: dict[int, ResponseSpec]
    path_prefix: str
    tags: list[str]


def _route_handler(
    workflow: Workflow, submit: WorkflowSubmit, options: dict[str, Any] | None, route: _RouteConfig, name: str
) -> HTTPRouteHandler:
    path = f"{route.path_prefix}/{workflow.route}"
    doc = request_doc(workflow, options)
    schema_extra: dict[str, Any] = {
        "properties": doc.properties,
        "required": doc.required or None,
        "examples": [doc.example],
    }
    if doc.additional_properties is False:
        schema_extra["additional_properties"] = False

    async def run_workflow(data: dict[str, Any], request: Request[Any, Any, Any]) -> Any:
        body = dict(data)
        values = body.pop("input", None)
        if "prompt" in body:
            raise InvalidRequest(
                f"POST {path} builds the graph from `input`; send `prompt` to POST /prompt",
                field="prompt",
            )
        graph = workflow.bind(values)
        if route.options_type is None:
            return await submit(graph, body, request)
        return await submit(graph, decode_options(body, graph, route.options_type), request)

    # The body's schema differs per workflow, so the annotations are set here rather than written in the signature.
    run_workflow.__annotations__ = {
        "data": Annotated[
            dict[str, Any],
            Body(title=f"{workflow.route} request", description=workflow.summary, schema_extra=schema_extra),
        ],
        "request": Request[Any, Any, Any],
        "return": route.response_type,
    }
    run_workflow.__name__ = run_workflow.__qualname__ = f"workflow_{name}"
    return post(
        path,
        summary=workflow.summary,
        description=workflow.description,
        tags=route.tags,
        responses=route.responses or None,
        operation_id=f"run_workflow_{name}",
        name=f"workflow:{workflow.route}",
        status_code=200,
    )(run_workflow)


def decode_options(body: dict[str, Any], graph: dict[str, Any], options_type: Any) -> Any:
    """`body` plus `"prompt": graph` as an `options_type`; a bad option is an InvalidRequest naming it."""
    try:
        return msgspec.convert({**body, "prompt": graph}, options_type)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _MSGSPEC_PATH.search(text)
        path = match["path"].lstrip(".") if match else ""
        message = text[: match.start()] if match else text
        named = _NAMED_FIELD.search(message)
        if named:
            path = f"{path}.{named['name']}" if path else named["name"]
        raise InvalidRequest(f"{path}: {message}" if path else message, field=path or None) from None


def _identifier(route: str) -> str:
    return "".join(char if char.isalnum() else "_" for char in route)
