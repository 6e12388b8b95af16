"""POST /download: install a model from a URL into one of ComfyUI's model folders. Wire format only; the work is
`models.library.ModelLibrary`'s.

Request  `{"url", "model_type", "filename"?, "wait"?, "auth"?}` (`auth`: one credential for this URL, in the
`credentials[].auth` shapes, Salad's spellings accepted). Responses (`# compat: salad`):
    202 {"url", "model_type", "filename", "status": "started"}
    200 {"url", "model_type", "filename", "status": "completed", "size", "duration"}   (wait: true; duration in s)
    400 naming the field (unknown model_type, bad url, bad filename/auth); download failures map like any error.
URLs in responses carry no signature or token.

Registering: add `DownloadController` to the route handlers and put the app's `ModelLibrary` in the application
state under `MODEL_LIBRARY_STATE_KEY` (e.g. in the lifespan: `app.state[MODEL_LIBRARY_STATE_KEY] = library`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Controller, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from comfyui_api.api.schemas import ERROR_RESPONSES
from comfyui_api.errors import ComfyUnavailable, InvalidRequest
from comfyui_api.models.library import ModelLibrary
from comfyui_api.models.urls import cache_url, url_filename
from comfyui_api.storage.base import Credential
from comfyui_api.storage.credentials import validate_credentials

MODEL_LIBRARY_STATE_KEY = "model_library"
_FIELDS = ("url", "model_type", "filename", "wait", "auth")


def provide_model_library(state: State) -> ModelLibrary:
    library = state.get(MODEL_LIBRARY_STATE_KEY)
    if not isinstance(library, ModelLibrary):
        raise ComfyUnavailable("model downloads are not available: the model library is not running")
    return library


class DownloadController(Controller):
    path = "/download"
    tags = ["models"]
    dependencies = {"model_library": Provide(provide_model_library, sync_to_thread=False)}

    @post(
        summary="Download a model into a model folder",
        description="Starts the download and answers 202, or with `wait: true` answers 200 once the file is in place.",
        status_code=HTTP_202_ACCEPTED,
        responses={code: ERROR_RESPONSES[code] for code in (400, 413, 503)},
    )
    async def download(
        self, data: JSONBody[dict[str, Any]], model_library: NamedDependency[ModelLibrary]
    ) -> Response[dict[str, Any]]:
        url, model_type, filename, wait, credentials = _parse(data)
        model_library.validate(url, model_type, filename)
        await model_library.check_reachable(url)
        if not wait:
            model_library.start_download(url, model_type, filename, credentials)
            body: dict[str, Any] = {
                "url": cache_url(url),
                "model_type": model_type,
                "filename": filename or url_filename(url),
                "status": "started",
            }
            return Response(body, status_code=HTTP_202_ACCEPTED)
        result = await model_library.download(url, model_type, filename, credentials)
        done: dict[str, Any] = {
            "url": result.url,
            "model_type": result.model_type,
            "filename": result.filename,
            "status": "completed",
            "size": result.size_bytes,
            "duration": round(result.duration_s, 3),
        }
        return Response(done, status_code=HTTP_200_OK)


def _parse(data: Mapping[str, Any]) -> tuple[str, str, str | None, bool, tuple[Credential, ...]]:
    unknown = sorted(str(key) for key in data if key not in _FIELDS)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; known fields: {', '.join(_FIELDS)}", field=unknown[0])
    url = data.get("url")
    if not isinstance(url, str) or not url.strip():
        raise InvalidRequest("url is required and must be a string", field="url")
    model_type = data.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise InvalidRequest("model_type is required and must be a string", field="model_type")
    filename = data.get("filename")
    if filename is not None and not isinstance(filename, str):
        raise InvalidRequest("filename must be a string", field="filename")
    wait = data.get("wait", False)
    if not isinstance(wait, bool):
        raise InvalidRequest("wait must be true or false", field="wait")
    return url.strip(), model_type, filename or None, wait, _credentials(url.strip(), data.get("auth"))


def _credentials(url: str, auth: Any) -> tuple[Credential, ...]:
    if auth is None:
        return ()
    if not isinstance(auth, Mapping):
        raise InvalidRequest('auth must be an object such as {"type": "bearer", "token": ...}', field="auth")
    credential = Credential(url_pattern=url, auth=dict(auth))
    try:
        validate_credentials([credential], field_name="auth")
    except InvalidRequest as exc:
        # the validator names `auth[0].auth.<x>`; this request has one credential, spelled `auth.<x>`
        field = (exc.field or "auth").replace("auth[0].auth", "auth")
        raise InvalidRequest(exc.message.replace("auth[0].auth", "auth"), field=field) from None
    return (credential,)
