"""The `/api/v1` gateway's wire shapes (a FastAPI gateway in front of ComfyUI that existing clients speak): every
answer is `{"code", "message", "data"}`, `data: null` on errors, with the gateway's business codes beside a
meaningful HTTP status. No framework, no I/O.

    code  200 ok | 400 bad request | 404 not found | 500 internal | 1001 ComfyUI unreachable
          1002 workflow validation failed | 1003 file operation failed
"""

from __future__ import annotations

from typing import Any

from comfyui_api.errors import ComfyApiError, ComfyUnavailable, NotFound, StorageError, WorkflowRejected

OK = 200
COMFYUI_UNREACHABLE = 1001
WORKFLOW_INVALID = 1002
FILE_OPERATION_FAILED = 1003


def envelope(data: Any, message: str = "success", code: int = OK) -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def error_code(error: ComfyApiError) -> int:
    """The business code of one of our errors."""
    if isinstance(error, ComfyUnavailable):
        return COMFYUI_UNREACHABLE
    if isinstance(error, WorkflowRejected):
        return WORKFLOW_INVALID
    if isinstance(error, StorageError):
        return FILE_OPERATION_FAILED
    if isinstance(error, NotFound):
        return 404
    return 400 if error.status_code < 500 else 500


def ws_message(kind: str, data: Any = None) -> dict[str, Any]:
    """A message of the gateway's websocket: `{"type", "data"}` (connected, submit_success, submit_error, pong,
    error; the job frames that follow are ComfyUI's own, in the same shape)."""
    return {"type": kind, "data": data if data is not None else {}}


def error_envelope(error: ComfyApiError) -> dict[str, Any]:
    message = error.message if error.field is None else f"{error.field}: {error.message}"
    return {"code": error_code(error), "message": message, "data": None}
