"""The storage fields of POST /prompt (`s3`, `azure_blob_upload`, `hf_upload`, `http_upload`, `credentials`,
`convert_output`, `fallback_to_base64`) turned into domain values and validated at the edge: every problem is an
InvalidRequest naming its field. Never echoes a credential's value; does no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from comfyui_api.dialects.salad import PromptRequest
from comfyui_api.errors import InvalidRequest
from comfyui_api.jobs.conversion import validate_convert_spec
from comfyui_api.jobs.model import ConvertSpec
from comfyui_api.storage.base import Credential, UploadTarget
from comfyui_api.storage.credentials import validate_credentials
from comfyui_api.storage.registry import UPLOAD_REQUEST_KEYS, StorageRegistry

# Request field -> storage registry name (compat: salad's request keys).
PROVIDER_BY_FIELD: Mapping[str, str] = {field: name for name, field in UPLOAD_REQUEST_KEYS.items()}
_CONVERT_KEYS = ("format", "options")
_CREDENTIAL_KEYS = ("url_pattern", "auth")


@dataclass(frozen=True)
class StorageFields:
    """What a request asked of storage, ready for `JobRequest`."""

    upload: UploadTarget | None = None
    convert: ConvertSpec | None = None
    credentials: tuple[Credential, ...] = ()
    fallback_to_base64: bool = False

    def job_fields(self) -> dict[str, Any]:
        """Keyword arguments of `JobRequest` (all but run_async, which callers combine with their own)."""
        return {
            "upload": self.upload,
            "convert": self.convert,
            "credentials": self.credentials,
            "fallback_to_base64": self.fallback_to_base64,
        }

    @property
    def run_async(self) -> bool:
        """The upload target's `async` flag: answer 202 now and deliver the URLs later."""
        return self.upload is not None and self.upload.run_async


def upload_target(targets: Mapping[str, Any | None], storage: StorageRegistry | None) -> UploadTarget | None:
    """The one upload target among `targets` (request field -> its object or None), validated by its provider."""
    named = {field: value for field, value in targets.items() if value is not None}
    if not named:
        return None
    if len(named) > 1:
        fields = ", ".join(sorted(named))
        raise InvalidRequest(f"only one upload target per request; got {fields}", field=",".join(sorted(named)))
    field, options = next(iter(named.items()))
    if not isinstance(options, Mapping):
        raise InvalidRequest(f"{field} must be an object", field=field)
    run_async = options.get("async", False)
    if not isinstance(run_async, bool):
        raise InvalidRequest(f"{field}.async must be true or false", field=f"{field}.async")
    if storage is None:
        raise InvalidRequest(f"{field}: storage uploads are not available on this server", field=field)
    target = UploadTarget(provider=PROVIDER_BY_FIELD[field], options=dict(options), run_async=run_async)
    storage.validate_target(target)
    return target


def convert_spec(raw: Mapping[str, Any] | None) -> ConvertSpec | None:
    """`convert_output: {format, options}` -> ConvertSpec; 400 naming e.g. `convert_output.options.quality`."""
    if raw is None:
        return None
    unknown = sorted(set(raw) - set(_CONVERT_KEYS))
    if unknown:
        raise InvalidRequest(f"unknown field 'convert_output.{unknown[0]}'", field=f"convert_output.{unknown[0]}")
    fmt = raw.get("format")
    if not isinstance(fmt, str):
        raise InvalidRequest("convert_output.format must be a string", field="convert_output.format")
    options = raw.get("options")
    spec = ConvertSpec(format=fmt, options={} if options is None else options)
    validate_convert_spec(spec)
    return spec


def credentials_of(raw: list[Any] | None) -> tuple[Credential, ...]:
    """`credentials: [{url_pattern, auth}]` -> Credentials; messages name fields, never values."""
    if not raw:
        return ()
    credentials: list[Credential] = []
    for index, item in enumerate(raw):
        where = f"credentials[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{where} must be an object with url_pattern and auth", field=where)
        unknown = sorted(set(item) - set(_CREDENTIAL_KEYS))
        if unknown:
            raise InvalidRequest(f"unknown field '{where}.{unknown[0]}'", field=f"{where}.{unknown[0]}")
        auth = item.get("auth")
        credentials.append(Credential(url_pattern=item.get("url_pattern"), auth=auth))  # type: ignore[arg-type]
    validate_credentials(credentials)
    return tuple(credentials)


def storage_fields(
    targets: Mapping[str, Any | None],
    *,
    convert_output: Mapping[str, Any] | None,
    credentials: list[Any] | None,
    fallback_to_base64: bool,
    storage: StorageRegistry | None,
) -> StorageFields:
    return StorageFields(
        upload=upload_target(targets, storage),
        convert=convert_spec(convert_output),
        credentials=credentials_of(credentials),
        fallback_to_base64=fallback_to_base64,
    )


def prompt_storage_fields(body: PromptRequest, storage: StorageRegistry | None) -> StorageFields:
    """The storage fields of a POST /prompt body."""
    targets = {field: getattr(body, field) for field in PROVIDER_BY_FIELD}
    return storage_fields(
        targets,
        convert_output=body.convert_output,
        credentials=body.credentials,
        fallback_to_base64=body.fallback_to_base64,
        storage=storage,
    )
