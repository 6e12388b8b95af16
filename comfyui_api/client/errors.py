"""The client's exceptions: one base, the server's own errors carrying its `type`, `message` and `field`.

ClientError
 +-- ServerUnreachable      no answer (refused, timed out, dropped)
 +-- ApiError               the server answered an error body: status, type, message, field, details
      +-- JobFailed         a job ended failed or cancelled (from `run`, `wait(..., raise_on_failure=True)`)
 +-- WebhookVerificationError
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ClientError(Exception):
    """Every exception this client raises."""


class ServerUnreachable(ClientError):
    """The server could not be reached, or the connection broke before an answer."""


class ApiError(ClientError):
    """An error answer: `status` (HTTP), and the server's `type`, `message`, `field` (a path such as
    `prompt.3.inputs.image`, when the error is about one) and `details`."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        *,
        field: str | None = None,
        details: Mapping[str, Any] | None = None,
        body: Any = None,
    ):
        self.status = status
        self.type = type
        self.message = message
        self.field = field
        self.details = dict(details or {})
        self.body = body
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.type}{where}: {self.message}"

    @classmethod
    def from_body(cls, status: int, body: Any) -> ApiError:
        """From `{"error": {"type", "message", "field"?, "details"?}}`; anything else becomes type `http_<status>`."""
        error = body.get("error") if isinstance(body, Mapping) else None
        if isinstance(error, Mapping):
            return cls(
                status,
                str(error.get("type") or f"http_{status}"),
                str(error.get("message") or ""),
                field=error.get("field") if isinstance(error.get("field"), str) else None,
                details=error.get("details") if isinstance(error.get("details"), Mapping) else None,
                body=body,
            )
        return cls(status, f"http_{status}", str(body)[:500], body=body)


class JobFailed(ApiError):
    """A job that ended `failed` or `cancelled`; `job_id` names it."""

    def __init__(self, job_id: str, status: int, type: str, message: str, **kwargs: Any):
        self.job_id = job_id
        super().__init__(status, type, message, **kwargs)


class WebhookVerificationError(ClientError):
    """A webhook whose signature, timestamp or headers do not check out."""
