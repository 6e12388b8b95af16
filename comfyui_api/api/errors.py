"""The ONE mapping from errors to HTTP responses: domain errors (`comfyui_api.errors`), Litestar's own validation,
body-size and routing errors, and anything unexpected, all as `{"error": {type, message, field?, details?}}`.

Handlers raise domain errors and never build error responses themselves.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from comfyui_api.errors import (
    CapacityError,
    ComfyApiError,
    ComfyUnavailable,
    InvalidRequest,
    PayloadTooLarge,
    WorkflowRejected,
)

log = logging.getLogger(__name__)

_BACKTICKED = re.compile(r"`([^`]+)`")
_KEY_FROM_MESSAGE = ("unknown field", "missing required field")
_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class _RoutingError(ComfyApiError):
    """A protocol-level HTTP error Litestar raised before any handler ran (404, 405, ...)."""

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail or "error")
        self.status_code = status_code
        self.kind = _HTTP_KINDS.get(status_code, "http_error")


def domain_error_response(exc: ComfyApiError) -> Response[Any]:
    body: dict[str, Any] = {"error": exc.to_dict()}
    if isinstance(exc, WorkflowRejected):
        body["node_errors"] = exc.node_errors
    headers: dict[str, str] = {}
    if isinstance(exc, CapacityError | ComfyUnavailable):
        headers["Retry-After"] = str(exc.retry_after_s)
    return Response(body, status_code=exc.status_code, headers=headers, media_type=MediaType.JSON)


def _validation_field(item: Mapping[str, Any]) -> str | None:
    """Litestar reports the body as key "data"; the real field is then named inside the message."""
    message = str(item.get("message", ""))
    key = item.get("key")
    if any(marker in message for marker in _KEY_FROM_MESSAGE):
        match = _BACKTICKED.search(message)
        if match:
            return f"{key}.{match.group(1)}" if key not in (None, "data") else match.group(1)
    return None if key in (None, "data") else str(key)


def _validation_error(exc: ValidationException) -> InvalidRequest:
    items = exc.extra if isinstance(exc.extra, list) else []
    first = items[0] if items and isinstance(items[0], Mapping) else {}
    message = str(first.get("message", "")) or exc.detail
    field = _validation_field(first) if first else None
    if message == "'data'":  # Litestar's text for an empty body
        return InvalidRequest("the request body must be a JSON object")
    if field and "unknown field" in message:
        return InvalidRequest(f"unknown field {field!r}", field=field)
    if field and "missing required field" in message:
        return InvalidRequest(f"missing required field {field!r}", field=field)
    return InvalidRequest(f"{field}: {message}" if field else message, field=field)


def handle_domain_error(_: Request[Any, Any, Any], exc: ComfyApiError) -> Response[Any]:
    return domain_error_response(exc)


def handle_validation_error(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    return domain_error_response(_validation_error(exc))


def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code == 413:
        return domain_error_response(PayloadTooLarge("the request body is larger than MAX_BODY_SIZE_MB allows"))
    if exc.status_code == 400:
        detail = exc.detail or "bad request"
        message = f"malformed JSON: {detail}" if "JSON" in detail else detail
        return domain_error_response(InvalidRequest(message))
    response = domain_error_response(_RoutingError(exc.status_code, exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def handle_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """JSON nested hundreds of levels deep exhausts the decoder's recursion: the caller's fault, not ours."""
    return domain_error_response(InvalidRequest("the request body nests lists and objects too deeply", field="body"))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return domain_error_response(ComfyApiError(f"internal error: {type(exc).__name__}"))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ComfyApiError: handle_domain_error,
    ValidationException: handle_validation_error,
    HTTPException: handle_http_error,
    RecursionError: handle_too_deep,
    Exception: handle_unexpected,
}
