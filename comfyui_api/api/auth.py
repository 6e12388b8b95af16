"""API keys: with API_KEYS and/or API_KEYS_FILE set, every request but /health, /ready and the API documentation
must carry `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time; otherwise a 401 in the
usual error shape. Keys are never logged. The file is read again on SIGHUP (`ApiKeys.reload`).

State lives on one `ApiKeys` object per app; the middleware only asks it.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

import msgspec
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from comfyui_api.errors import Unauthorized
from comfyui_api.settings import ServerSettings

log = logging.getLogger(__name__)

# Probes must work without a key; the documentation holds no secret, and a browser cannot add a header to load it
# (Swagger UI then sends the key the user enters with every "Try it out").
OPEN_PATHS = ("/health", "/ready", "/docs", "/redoc")
SECURITY_SCHEMES = {
    "BearerKey": SecurityScheme(type="http", scheme="bearer", description="Authorization: Bearer <one of API_KEYS>"),
    "HeaderKey": SecurityScheme(type="apiKey", security_scheme_in="header", name="X-API-Key", description="X-API-Key"),
}


def _read_keys(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


class ApiKeys:
    def __init__(self, settings: ServerSettings):
        self._fixed = set(settings.api_keys)
        self._file = settings.api_keys_file
        self._from_file = _read_keys(self._file) if self._file is not None else set()

    @property
    def enabled(self) -> bool:
        return self._file is not None or bool(self._fixed)

    def reload(self) -> None:
        """Read API_KEYS_FILE again (SIGHUP). A file that cannot be read keeps the keys there were."""
        if self._file is None:
            return
        try:
            self._from_file = _read_keys(self._file)
        except OSError as exc:
            log.error("API_KEYS_FILE could not be read again (%s); the previous keys stay", exc.strerror)
            return
        log.info("API keys reloaded: %d from API_KEYS_FILE, %d from API_KEYS", len(self._from_file), len(self._fixed))

    def accepts(self, presented: str | None) -> bool:
        if not presented:
            return False
        candidate = presented.encode()
        # Every key is compared, so the time taken does not tell which (or whether any) key came close.
        matched = False
        for key in (*self._fixed, *self._from_file):
            matched |= hmac.compare_digest(candidate, key.encode())
        return matched


def presented_key(headers: dict[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class ApiKeyMiddleware(ASGIMiddleware):
    """Refuses HTTP and websocket requests without a valid key (401, WWW-Authenticate: Bearer)."""

    scopes = (ScopeType.HTTP, ScopeType.WEBSOCKET)

    def __init__(self, keys: ApiKeys):
        self._keys = keys

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = scope.get("path", "")
        if not self._keys.enabled or scope["type"] not in ("http", "websocket") or _is_open(path):
            await next_app(scope, receive, send)
            return
        received = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if self._keys.accepts(presented_key(received)):
            await next_app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})  # 4000 + HTTP status
            return
        error = Unauthorized("a valid API key is required: Authorization: Bearer <key> or X-API-Key: <key>")
        body = msgspec.json.encode({"error": error.to_dict()})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


def _is_open(path: str) -> bool:
    return any(path == open_path or path.startswith(open_path + "/") for open_path in OPEN_PATHS)
