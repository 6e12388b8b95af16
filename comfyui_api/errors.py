"""The exception tree of comfyui-api. Every failure a caller can see is one of these.

Raised anywhere below the edges; mapped to HTTP (or to a webhook / RunPod / AMQP error body) in exactly one place
per adapter (`api/errors.py` for HTTP). Nothing here knows about HTTP except the `status_code` hint.

    ComfyApiError
    ├── RequestError                 the caller's fault (4xx)
    │   ├── InvalidRequest           a field of the request is wrong (400, names the field)
    │   ├── PayloadTooLarge          body over MAX_BODY_SIZE_MB (413)
    │   ├── InputStagingError        a media/model input could not be decoded or downloaded (400, names the field)
    │   ├── URLRefused               a request's URL points where the outbound guard does not go (400, names the field)
    │   ├── WorkflowRejected         ComfyUI refused the graph; carries its `error` and `node_errors` (400)
    │   ├── Unauthorized             no valid API key (401)
    │   └── JobNotFound              no such job id (404)
    ├── CapacityError                queue full (503 + Retry-After)
    ├── InfrastructureError          something we depend on failed (5xx)
    │   ├── ComfyUnavailable         ComfyUI not started, restarting or gone (503 + Retry-After)
    │   ├── ComfyProtocolError       ComfyUI answered something we cannot understand (502)
    │   └── StorageError             an upload/download to a storage provider failed (502)
    ├── ExecutionFailed              ComfyUI ran the graph and a node raised (500, node id/class/exception/traceback)
    ├── JobTimeout                   the job did not finish within its timeout_s (504)
    └── JobCancelled                 interrupted on request, or the server is shutting down (409)
"""

from __future__ import annotations

from typing import Any


class ComfyApiError(Exception):
    """Base of every error we raise on purpose. `kind` is a stable machine-readable name."""

    kind = "internal_error"
    status_code = 500

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The structured error as it appears in HTTP bodies, webhooks and SSE `failed` events."""
        body: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class RequestError(ComfyApiError):
    kind = "invalid_request"
    status_code = 400


class InvalidRequest(RequestError):
    kind = "invalid_request"


class PayloadTooLarge(RequestError):
    kind = "payload_too_large"
    status_code = 413


class InputStagingError(RequestError):
    kind = "input_staging_failed"


class URLRefused(RequestError):
    """A URL from a request resolves to a loopback, private, link-local or otherwise guarded address (or to ComfyUI
    or this server), or redirects from https to http. See `storage/outbound.py`."""

    kind = "url_refused"


class WorkflowRejected(RequestError):
    """ComfyUI's validation refused the graph (or accepted only part of it)."""

    kind = "workflow_rejected"

    def __init__(self, message: str, *, comfy_error: dict[str, Any], node_errors: dict[str, Any]):
        super().__init__(message, details={"error": comfy_error, "node_errors": node_errors})
        self.comfy_error = comfy_error
        self.node_errors = node_errors


class Unauthorized(RequestError):
    kind = "unauthorized"
    status_code = 401


class NotFound(RequestError):
    kind = "not_found"
    status_code = 404


class JobNotFound(NotFound):
    kind = "job_not_found"


class CapacityError(ComfyApiError):
    kind = "queue_full"
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 5, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class InfrastructureError(ComfyApiError):
    kind = "infrastructure_error"
    status_code = 502


class ComfyUnavailable(InfrastructureError):
    kind = "comfyui_unavailable"
    status_code = 503

    def __init__(self, message: str, *, retry_after_s: int = 10, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after_s = retry_after_s


class ComfyProtocolError(InfrastructureError):
    kind = "comfyui_protocol_error"


class StorageError(InfrastructureError):
    kind = "storage_failed"

    def __init__(self, message: str, *, provider: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.details.setdefault("provider", provider)
        self.provider = provider


class ExecutionFailed(ComfyApiError):
    """A node raised while ComfyUI executed the graph. Details mirror ComfyUI's `execution_error` frame."""

    kind = "execution_failed"
    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        node_id: str | None,
        node_type: str | None,
        exception_type: str | None,
        traceback: list[str] | None = None,
    ):
        super().__init__(
            message,
            details={
                "node_id": node_id,
                "node_type": node_type,
                "exception_type": exception_type,
                "exception_message": message,
                "traceback": list(traceback or []),
            },
        )
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type


class JobTimeout(ComfyApiError):
    kind = "timeout"
    status_code = 504


class JobCancelled(ComfyApiError):
    kind = "cancelled"
    status_code = 409
