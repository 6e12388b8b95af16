"""SaladTechnologies' comfyui-api wire shapes (msgspec Structs): the POST /prompt request, its 200 body and its 202,
and the error body. Requests reject unknown fields, so a typo is a 400 naming it.

Shapes follow Salad's (`id`, `prompt`, `images`, `filenames`, `stats`) so clients can switch servers; additions
(`outputs`, `texts`, `timeout_s`, `metadata`) are backwards compatible. No framework import and no domain logic:
conversion to a `JobRequest` is in `dialects/salad_request.py`.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec

JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

JobId = Annotated[
    str,
    msgspec.Meta(
        pattern=JOB_ID_PATTERN,
        description="Job id: 1-128 letters, digits, '_', '-' or '.' (ComfyUI gets a prompt_id of its own).",
        examples=["3f1c2a9e-5a8b-4c1e-9f3a-2b7d6e8c9a01"],
    ),
]
TimeoutSeconds = Annotated[
    float, msgspec.Meta(ge=1, description="Fail the job (504) if it takes longer (seconds; at least 1).")
]


def new_job_id() -> str:
    return str(uuid.uuid4())


# Storage fields are plain objects here and validated by `dialects/salad_storage.py`, so that each error names its
# field.
_KEY_STYLE = "key_style: 'job' (default, <prefix><id>/<filename>) or 'flat' (<prefix><filename>)."
_ASYNC = "async: true answers 202 at once and delivers the URLs by webhook."
S3Upload = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"Upload outputs to S3: bucket, prefix, presign_expires_s (return presigned URLs). {_KEY_STYLE} "
        f"{_ASYNC}",
        examples=[{"bucket": "my-bucket", "prefix": "outputs/", "async": False}],
    ),
]
AzureBlobUpload = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"Upload outputs to Azure Blob Storage: container, blob_prefix. {_KEY_STYLE} {_ASYNC}",
        examples=[{"container": "outputs", "blob_prefix": "images/"}],
    ),
]
HfUpload = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"Upload outputs to a Hugging Face repo: repo, repo_type, revision, directory. {_KEY_STYLE} "
        f"{_ASYNC}",
        examples=[{"repo": "acme/outputs", "repo_type": "dataset", "directory": "runs"}],
    ),
]
HttpUpload = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=f"PUT outputs under url_prefix. {_KEY_STYLE} {_ASYNC}",
        examples=[{"url_prefix": "https://files.example.com/outputs"}],
    ),
]
Credentials = Annotated[
    list[Any],
    msgspec.Meta(
        description="Credentials for downloads and uploads whose URL matches url_pattern (a prefix, or a glob with "
        "* and **). auth.type: bearer {token}, basic {username, password}, header {name, value}, query {name, value}"
        " or s3 {access_key_id, secret_access_key, session_token?, region?, endpoint_url?}. Never echoed.",
        examples=[[{"url_pattern": "https://files.example.com/**", "auth": {"type": "bearer", "token": "..."}}]],
    ),
]
ConvertOutput = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="Convert image outputs: format jpeg | webp | png, with that format's options (jpeg: quality, "
        "progressive, chroma_subsampling, optimize, background; webp: quality, lossless, near_lossless, "
        "alpha_quality, method, exact; png: compress_level, optimize). Video and audio are left as they are.",
        examples=[{"format": "webp", "options": {"quality": 80}}],
    ),
]
FallbackToBase64 = Annotated[
    bool,
    msgspec.Meta(
        description="When an upload fails, return that output inline as base64 instead (up to "
        "MAX_BASE64_FALLBACK_MB in all); outputs[].error still says the upload failed."
    ),
]


WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        description="Answer 202 at once; POST one signed event (Standard Webhooks, WEBHOOK_SECRET) to this URL when "
        "the job ends: `prompt.complete` with the body a synchronous request gets, or `prompt.failed`.",
        examples=["https://example.com/hooks/comfy"],
    ),
]
LegacyWebhookUrl = Annotated[
    str,
    msgspec.Meta(
        description="Deprecated (use webhook_v2): answer 202 at once; POST one unsigned `output.complete` per output "
        "file, or one `prompt.failed`, to this URL."
    ),
]
RunAsync = Annotated[
    bool,
    msgspec.Meta(
        description="Answer 202 at once and run the job in the background: follow it at /jobs/<id> (or its "
        "/events), or let a webhook_v2/webhook or an upload target (s3, azure_blob_upload, hf_upload, http_upload) "
        "deliver the outputs."
    ),
]
CancelOnDisconnect = Annotated[
    bool,
    msgspec.Meta(
        description="With `Accept: text/event-stream`: cancel the job when the client disconnects from the stream "
        "(by default the job runs on)."
    ),
]


Metadata = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description="Any JSON object (at most 16 KiB): kept on the job's record and echoed in its webhooks and events.",
        examples=[{"user": "u-123", "batch": 7}],
    ),
]


class PromptRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /prompt. `prompt` is a ComfyUI API-format graph: {node id: {class_type, inputs}}."""

    prompt: dict[str, Any]
    id: JobId = msgspec.field(default_factory=new_job_id)
    timeout_s: TimeoutSeconds | None = None
    s3: S3Upload | None = None
    azure_blob_upload: AzureBlobUpload | None = None
    hf_upload: HfUpload | None = None
    http_upload: HttpUpload | None = None
    credentials: Credentials | None = None
    convert_output: ConvertOutput | None = None
    fallback_to_base64: FallbackToBase64 = False
    webhook_v2: WebhookUrl | None = None
    webhook: LegacyWebhookUrl | None = None
    run_async: RunAsync = msgspec.field(default=False, name="async")
    cancel_on_disconnect: CancelOnDisconnect = False
    metadata: Metadata | None = None


class AcceptedResponse(msgspec.Struct, kw_only=True):
    """202 of POST /prompt for an async job (`webhook_v2`, `webhook` or `async`): it runs in the background. The
    request's fields are echoed too (never `credentials`), as Salad's comfyui-api does."""

    id: str
    status: str = "ok"
    job: str  # where to poll it: /jobs/<id> (also /jobs/<id>/events to stream it)


class OutputInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    node_id: str
    kind: str  # image | animated | video | audio | latent | file
    filename: str
    content_type: str
    size_bytes: int
    url: str | None = None  # where it was uploaded
    error: str | None = None  # why its upload failed
    note: str | None = None  # e.g. why convert_output left it as it was


class ExecutionStats(msgspec.Struct, kw_only=True):
    start: float | None  # epoch ms
    end: float | None
    duration: float | None
    nodes: dict[str, dict[str, float]]  # node id -> {start (epoch ms), duration (ms)}


class StatsBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Milliseconds. `upload_time` only when the outputs were uploaded."""

    queue_wait: float
    comfy_execution: ExecutionStats
    preprocess_time: float
    comfy_round_trip_time: float
    postprocess_time: float
    total_time: float
    upload_time: float | None = None


class PromptResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """200 of POST /prompt. `images[i]` is the base64 of `outputs[i]` (every output file, not only images), or its
    URL when it was uploaded. When an upload failed and the output was not returned inline, the answer is a 502 of
    this same shape plus `error`, and `outputs[i].error` says why (`images[i]` is then "")."""

    id: str
    prompt: dict[str, Any]
    images: list[str]
    filenames: list[str]
    outputs: list[OutputInfo]
    texts: list[str]
    stats: StatsBody
    error: ErrorDetail | None = None  # only with a 502: some outputs could not be delivered
    metadata: dict[str, Any] | None = None  # the request's, when it had any


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    message: str
    field: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every 4xx/5xx. `node_errors` (ComfyUI's, verbatim) only when ComfyUI rejected the workflow."""

    error: ErrorDetail
    node_errors: dict[str, Any] | None = None
