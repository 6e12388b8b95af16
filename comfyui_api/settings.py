"""Settings: the ONLY module that reads the environment. One typed, frozen tree, validated once at start-up.

Variable names follow SaladTechnologies' comfyui-api where one exists, so a deployment can switch by changing its
image. `load_settings(os.environ)` raises `SettingsError` naming the offending variable. Nothing here touches the
filesystem or the network; directories are created by whoever uses them, at start-up.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlsplit

from dotenv import dotenv_values

T = TypeVar("T")

SYSTEM_EVENT_NAMES = (
    "status",
    "progress",
    "progress_state",
    "executing",
    "execution_start",
    "execution_cached",
    "executed",
    "execution_success",
    "execution_interrupted",
    "execution_error",
    "storage.file_downloaded",
    "storage.file_uploaded",
    "storage.file_deleted",
)


# Standard Webhooks secrets are often written with this prefix.
SECRET_PREFIX = "whsec_"


def decode_webhook_secret(secret: str) -> bytes:
    """The HMAC key held by WEBHOOK_SECRET: base64, optionally prefixed `whsec_`, padding optional.

    Raises ValueError naming WEBHOOK_SECRET (without echoing it) when the value is not usable base64.
    """
    text = secret.strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    text += "=" * (-len(text) % 4)  # unpadded base64 is common in generated secrets
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "WEBHOOK_SECRET is not valid base64 (an optional 'whsec_' prefix followed by standard base64)"
        ) from None
    if not key:
        raise ValueError("WEBHOOK_SECRET decodes to an empty key")
    return key


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "::"  # HOST
    port: int = 3000  # PORT
    max_body_bytes: int = 100 * 1024 * 1024  # MAX_BODY_SIZE_MB
    max_queue_depth: int = 0  # MAX_QUEUE_DEPTH; 0 = unbounded
    shutdown_grace_s: float = 60.0  # SHUTDOWN_GRACE_S: how long in-flight jobs may finish after SIGTERM
    log_level: str = "INFO"  # LOG_LEVEL
    log_format: str = "text"  # LOG_FORMAT: text | json (one object a line, with the job id)
    sse_heartbeat_s: float = 15.0  # SSE_HEARTBEAT_S: a comment line on a quiet event stream, for idle proxies
    api_keys: tuple[str, ...] = field(default=(), repr=False)  # API_KEYS: comma-separated; none = no auth
    api_keys_file: Path | None = None  # API_KEYS_FILE: one key a line, read again on SIGHUP
    max_header_bytes: int = 64 * 1024  # MAX_HEADER_BYTES: request line + headers; more is a 431
    header_timeout_s: float = 15.0  # HEADER_TIMEOUT_S: a request's head must arrive within this (else 408, closed)
    body_read_timeout_s: float = 30.0  # BODY_READ_TIMEOUT_S: a body that sends nothing for this long is dropped
    comfy_passthrough: str = "on"  # COMFYUI_PASSTHROUGH: the /comfyui door: on | off | full (every route passed on)


@dataclass(frozen=True)
class ComfySettings:
    url: str | None = None  # COMFYUI_URL: attach to a running ComfyUI instead of launching one
    cmd: tuple[str, ...] = ()  # CMD: argv that launches ComfyUI (empty when attaching)
    home: Path = Path("/opt/ComfyUI")  # COMFY_HOME: working directory of CMD
    direct_address: str = "127.0.0.1"  # DIRECT_ADDRESS
    port: int = 8188  # COMFYUI_PORT_HOST
    input_dir: Path = Path("/opt/ComfyUI/input")  # INPUT_DIR
    output_dir: Path = Path("/opt/ComfyUI/output")  # OUTPUT_DIR
    temp_dir: Path = Path("/opt/ComfyUI/temp")  # TEMP_DIR
    model_dir: Path = Path("/opt/ComfyUI/models")  # MODEL_DIR
    using_simulator: bool = False  # no ComfyUI configured: CMD runs comfyui_api.simulator
    always_restart: bool = False  # ALWAYS_RESTART_COMFYUI
    startup_check_interval_s: float = 1.0  # STARTUP_CHECK_INTERVAL_S
    startup_check_max_tries: int = 120  # STARTUP_CHECK_MAX_TRIES (interval x tries = start-up timeout)
    http_timeout_s: float = 30.0  # COMFYUI_HTTP_TIMEOUT_S: one HTTP call to ComfyUI
    ws_idle_timeout_s: float = 15.0  # COMFYUI_WS_IDLE_TIMEOUT_S: no frame for this long -> check /history
    # WEBSOCKET_RECONNECT_ATTEMPTS: failed reconnects of the websocket after which the jobs in flight fail (0: never;
    # they go on through /history meanwhile); WEBSOCKET_RECONNECT_DELAY_S: the longest pause between two attempts
    ws_reconnect_attempts: int = 0
    ws_reconnect_delay_s: float = 10.0
    ws_trace: bool = False  # WEBSOCKET_TRACE: log every frame ComfyUI sends
    outputs_colocated: bool = True  # COMFYUI_OUTPUTS_COLOCATED: read output files from disk instead of /view
    # COMFYUI_INPUTS_COLOCATED: ComfyUI reads INPUT_DIR; when false, staged inputs reach it via POST /upload/image
    inputs_colocated: bool = True
    keep_outputs: bool = False  # KEEP_OUTPUTS: leave ComfyUI's output files on disk after reading them
    # COMFYUI_STALL_TIMEOUT_S: work queued and no frame for this long (or no HTTP answer) = stalled; 0 = no watchdog
    stall_timeout_s: float = 900.0

    @property
    def base_url(self) -> str:
        if self.url:
            return self.url.rstrip("/")
        host = self.direct_address
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class JobSettings:
    default_timeout_s: float = 600.0  # PROMPT_TIMEOUT_S: default per-request timeout_s
    max_timeout_s: float = 24 * 3600.0  # PROMPT_MAX_TIMEOUT_S: largest timeout_s a request may ask for
    max_input_bytes: int = 512 * 1024 * 1024  # MAX_INPUT_SIZE_MB: one staged input file
    download_timeout_s: float = 300.0  # INPUT_DOWNLOAD_TIMEOUT_S: one input download (or upload to ComfyUI), whole
    max_parallel_downloads: int = 8  # MAX_PARALLEL_DOWNLOADS
    max_graph_nodes: int = 10_000  # MAX_GRAPH_NODES: nodes a graph may have
    records_max: int = 1000  # JOB_RECORDS_MAX: job records kept (finished ones are dropped oldest first)
    record_ttl_s: float = 3600.0  # JOB_RECORD_TTL_S: a finished job's record is dropped this long after it ended
    outputs_max_bytes: int = 2 * 1024**3  # JOB_OUTPUTS_MAX_GB: output files kept for finished jobs, in all
    store_path: Path | None = None  # JOB_STORE: "memory" (None) or sqlite:///path/jobs.db (that file)


@dataclass(frozen=True)
class WebhookSettings:
    secret: str | None = None  # WEBHOOK_SECRET (base64, optional `whsec_` prefix)
    retries: int = 3  # PROMPT_WEBHOOK_RETRIES
    timeout_s: float = 10.0  # WEBHOOK_TIMEOUT_S: one delivery attempt
    backoff_base_s: float = 1.0  # WEBHOOK_BACKOFF_BASE_S: first retry delay; doubles, with jitter
    system_url: str | None = None  # SYSTEM_WEBHOOK_URL
    system_events: frozenset[str] = frozenset()  # SYSTEM_WEBHOOK_EVENTS: comma list or "all"
    system_meta: Mapping[str, str] = field(default_factory=dict)  # SYSTEM_META_<key>=<value>
    system_flush_interval_s: float = 0.5  # SYSTEM_WEBHOOK_FLUSH_S: batching window for system events


@dataclass(frozen=True)
class StorageSettings:
    aws_region: str | None = None  # AWS_REGION / AWS_DEFAULT_REGION
    aws_endpoint_url: str | None = None  # AWS_ENDPOINT_URL
    azure_connection_string: str | None = None  # AZURE_STORAGE_CONNECTION_STRING
    azure_account: str | None = None  # AZURE_STORAGE_ACCOUNT
    azure_key: str | None = None  # AZURE_STORAGE_KEY
    azure_sas_token: str | None = None  # AZURE_STORAGE_SAS_TOKEN
    hf_token: str | None = None  # HF_TOKEN
    hf_endpoint: str = "https://huggingface.co"  # HF_ENDPOINT
    http_auth_header_name: str | None = None  # HTTP_AUTH_HEADER_NAME
    http_auth_header_value: str | None = None  # HTTP_AUTH_HEADER_VALUE
    transfer_timeout_s: float = 600.0  # STORAGE_TIMEOUT_S: one upload or download, whole
    max_parallel_uploads: int = 4  # MAX_PARALLEL_UPLOADS
    max_base64_fallback_bytes: int = 64 * 1024 * 1024  # MAX_BASE64_FALLBACK_MB
    allow_private_urls: bool = False  # ALLOW_PRIVATE_URLS: request URLs may reach loopback and private addresses
    trusted_origins: tuple[str, ...] = ()  # HTTP_TRUSTED_ORIGINS: exact origins request URLs may reach, whatever


@dataclass(frozen=True)
class ModelSettings:
    manifest_path: Path | None = None  # MANIFEST
    manifest_json: str | None = None  # MANIFEST_JSON (wins over MANIFEST)
    cache_dir: Path = field(default_factory=lambda: Path("~/.cache/comfyui-api").expanduser())  # CACHE_DIR
    lru_cache_size_bytes: int = 0  # LRU_CACHE_SIZE_GB; 0 = no eviction
    ready_waits_for_after_start: bool = True  # READY_WAITS_FOR_MODELS
    download_timeout_s: float = 3600.0  # MODEL_DOWNLOAD_TIMEOUT_S: one model download (manifest, URL, /download)


@dataclass(frozen=True)
class WarmupSettings:
    prompt_file: Path | None = None  # WARMUP_PROMPT_FILE
    prompt_url: str | None = None  # WARMUP_PROMPT_URL
    required: bool = False  # WARMUP_REQUIRED: a failed warmup exits the process
    timeout_s: float = 1800.0  # WARMUP_TIMEOUT_S


@dataclass(frozen=True)
class WorkflowSettings:
    workflow_dir: Path | None = None  # WORKFLOW_DIR


@dataclass(frozen=True)
class RunpodBucket:
    """Where the RunPod worker uploads outputs (BUCKET_* or a gc_hmac.json key file)."""

    endpoint_url: str
    bucket: str
    access_key_id: str = field(repr=False)
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class RunpodSettings:
    bucket: RunpodBucket | None = None  # BUCKET_ENDPOINT_URL + keys, or RUNPOD_BUCKET_KEYS_FILE
    comfy_org_api_key: str | None = field(default=None, repr=False)  # COMFY_ORG_API_KEY
    local_mode: bool = False  # LOCAL_MODE: answer every job with LOCAL_IMAGE_PATH, without ComfyUI
    local_image_path: Path = Path("/girs.png")  # LOCAL_IMAGE_PATH
    refresh_worker: bool = False  # REFRESH_WORKER: ask RunPod for a fresh worker after each job
    max_result_bytes: int = 10 * 1024 * 1024  # RUNPOD_RESULT_LIMIT_MB: RunPod refuses larger /run results


@dataclass(frozen=True)
class AmqpSettings:
    url: str = field(default="", repr=False)  # AMQP_URL, else built from AMQP_HOST/PORT/USER/PASS/VHOST; "" = off
    tls_ca_file: Path | None = None  # AMQP_TLS_CA_FILE
    tls_cert_file: Path | None = None  # AMQP_TLS_CERT_FILE
    tls_key_file: Path | None = None  # AMQP_TLS_KEY_FILE
    prefetch: int = 1  # AMQP_PREFETCH: tasks taken at once
    exchange: str = "runnode.comfyui.topic"  # AMQP_EXCHANGE_TOPIC
    dead_letter_exchange: str | None = None  # AMQP_DEAD_LETTER_EXCHANGE: where non-JSON messages go
    instance_id: str | None = None  # INSTANCE_ID (default: from the host name)
    instance_dedicated_id: str | None = None  # INSTANCE_DEDICATED_ID -> q.instance.<id>
    instance_workflow_id: str | None = None  # INSTANCE_WORKFLOW_ID -> q.workflow.<id>
    instance_is_free: bool = False  # INSTANCE_IS_FREE -> q.gpu.free
    instance_gpu_vram: str | None = None  # INSTANCE_GPU_VRAM: 20G | 40G | 70G -> q.gpu.<vram>
    heartbeat_enabled: bool = True  # HEARTBEAT_ENABLED
    heartbeat_interval_ms: int = 5000  # HEARTBEAT_INTERVAL
    public_url: str | None = None  # COMFY_PUBLIC_URL
    public_ws_url: str | None = None  # COMFY_PUBLIC_WS_URL
    api_url: str | None = None  # API_URL
    supported_models: tuple[str, ...] = ()  # SUPPORTED_MODELS: comma-separated

    @property
    def enabled(self) -> bool:
        return bool(self.url)


@dataclass(frozen=True)
class TracingSettings:
    """OpenTelemetry traces of jobs (the `otel` extra), exported over OTLP/HTTP; off without an endpoint."""

    otlp_endpoint: str | None = None  # OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL (traces go to /v1/traces)
    # OTEL_EXPORTER_OTLP_HEADERS: `key=value,key2=value2`, sent with each export (e.g. an ingest key)
    otlp_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    service_name: str = "comfyui-api"  # OTEL_SERVICE_NAME


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    comfy: ComfySettings = field(default_factory=ComfySettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    workflows: WorkflowSettings = field(default_factory=WorkflowSettings)
    runpod: RunpodSettings = field(default_factory=RunpodSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    tracing: TracingSettings = field(default_factory=TracingSettings)
    env_file: Path | None = None  # the .env file read beside the environment (see `with_env_file`), if any


class _Env:
    """Typed reads of one environment mapping; every error names the variable."""

    def __init__(self, env: Mapping[str, str]):
        self._env = env

    def text(self, name: str, default: T) -> str | T:
        value = self._env.get(name, "").strip()
        return value if value else default

    def _parse(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except (ValueError, TypeError):
            raise SettingsError(f"{name}={raw!r} is not {what}") from None

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self._parse(name, default, int, "an integer")
        if value < minimum:
            raise SettingsError(f"{name}={value} must be >= {minimum}")
        return value

    def number(self, name: str, default: float, *, minimum: float = 0.0) -> float:
        value = self._parse(name, default, float, "a number")
        if value < minimum:
            raise SettingsError(f"{name}={value} must be >= {minimum}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        def parse(raw: str) -> bool:
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)

        return self._parse(name, default, parse, "a boolean (true/false/1/0)")

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).lower()
        if value not in allowed:
            raise SettingsError(f"{name}={value!r} must be one of {', '.join(allowed)}")
        return value

    def path(self, name: str, default: T) -> Path | T:
        raw = self._env.get(name, "").strip()
        return Path(raw).expanduser() if raw else default

    def url(self, name: str, default: T, schemes: tuple[str, ...] = ("http", "https")) -> str | T:
        raw = self._env.get(name, "").strip()
        if not raw:
            return default
        scheme = raw.split("://", 1)[0].lower() if "://" in raw else ""
        if scheme not in schemes:
            raise SettingsError(f"{name}={raw!r} must be a URL starting with {' or '.join(schemes)}://")
        return raw

    def with_prefix(self, prefix: str) -> dict[str, str]:
        return {k[len(prefix) :]: v for k, v in self._env.items() if k.startswith(prefix) and len(k) > len(prefix)}


def _is_runnable(program: str, cwd: Path) -> bool:
    """A program name on PATH, or a path to an executable file (relative ones from CMD's working directory)."""
    if "/" not in program:
        return shutil.which(program) is not None
    path = Path(program) if Path(program).is_absolute() else cwd / program
    return path.is_file() and os.access(path, os.X_OK)


def _comfy_python(env: _Env, home: Path) -> str:
    """The interpreter that runs COMFY_HOME/main.py: COMFYUI_PYTHON, else the checkout's own venv (`venv/` or
    `.venv/`, as ComfyUI's install guides and comfy-cli make), else `python` from PATH."""
    explicit = env.path("COMFYUI_PYTHON", None)
    if explicit is not None:
        if not explicit.is_file():
            raise SettingsError(f"COMFYUI_PYTHON={str(explicit)!r} is not a file")
        return str(explicit)
    for venv in ("venv", ".venv"):
        for name in ("bin/python", "Scripts/python.exe"):
            candidate = home / venv / name
            if candidate.is_file():
                return str(candidate)
    return "python"


def _attach_url(env: _Env) -> str | None:
    """COMFYUI_URL, else the /api/v1 gateway's spelling of it: COMFYUI_HOST (and COMFYUI_PORT, default 8188)."""
    url = env.url("COMFYUI_URL", None)
    host = env.text("COMFYUI_HOST", None)
    if url is not None or host is None:
        return url
    port = env.integer("COMFYUI_PORT", 8188, minimum=1)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _comfy_settings(env: _Env, data_home: Path) -> ComfySettings:
    url = _attach_url(env)
    address = env.text("DIRECT_ADDRESS", "127.0.0.1")
    port = env.integer("COMFYUI_PORT_HOST", 8188, minimum=1)
    raw_cmd = env.text("CMD", "")
    home_given = env.text("COMFY_HOME", None) is not None
    home = env.path("COMFY_HOME", Path("/opt/ComfyUI"))
    using_simulator = False
    if url:
        cmd: tuple[str, ...] = ()
    elif raw_cmd:
        try:
            cmd = tuple(shlex.split(raw_cmd))
        except ValueError as exc:
            raise SettingsError(f"CMD could not be parsed as a command line: {exc}") from None
        if not cmd or not _is_runnable(cmd[0], home):
            raise SettingsError(f"CMD={raw_cmd!r}: {cmd[0] if cmd else 'nothing'!r} is not a program that can be run")
    elif (home / "main.py").is_file():
        cmd = (_comfy_python(env, home), "main.py", "--listen", address, "--port", str(port))
        comfy_log_level = env.choice("COMFY_LOG_LEVEL", "", ("", "debug", "info", "warning", "error", "critical"))
        if comfy_log_level:  # worker-comfyui's name: ComfyUI's own --verbose level
            cmd += ("--verbose", comfy_log_level.upper())
    elif home_given:
        # Never a silent fallback: a production server must not answer with the simulator's synthetic images.
        raise SettingsError(
            f"COMFY_HOME={str(home)!r} holds no ComfyUI (no main.py); fix it, or set CMD or COMFYUI_URL"
        )
    else:
        # No ComfyUI configured: run the bundled simulator so the server is usable at once.
        using_simulator = True
        home = data_home / "simulator"
        # A frozen single-file build runs its simulator as itself (`comfyui-api simulator`); Python takes `-m`.
        runner = (
            (sys.executable, "simulator")
            if getattr(sys, "frozen", False)
            else (sys.executable, "-m", "comfyui_api.simulator")
        )
        cmd = (*runner, "--listen", address, "--port", str(port))
    inputs_colocated = env.flag("COMFYUI_INPUTS_COLOCATED", not url)
    # Attached to a ComfyUI on another machine, inputs are staged in a folder of ours and uploaded to it: nothing is
    # written under COMFY_HOME (which may not exist here, or not be writable).
    input_dir = env.path("INPUT_DIR", home / "input" if inputs_colocated else data_home / "staging" / "input")
    output_dir = env.path("OUTPUT_DIR", home / "output")
    temp_dir = env.path("TEMP_DIR", home / "temp")
    model_dir = env.path("MODEL_DIR", home / "models")
    if using_simulator:
        cmd += ("--input-directory", str(input_dir), "--output-directory", str(output_dir))
        # ComfyUI (and so the simulator) writes temp files into `<--temp-directory>/temp`.
        temp_root = temp_dir.parent if temp_dir.name == "temp" else temp_dir
        cmd += ("--temp-directory", str(temp_root), "--models-directory", str(model_dir))
        cmd += ("--base-directory", str(home))  # its user/ folder too: never the working directory
    return ComfySettings(
        url=url,
        cmd=cmd,
        home=home,
        direct_address=address,
        port=port,
        input_dir=input_dir,
        output_dir=output_dir,
        temp_dir=temp_dir,
        model_dir=model_dir,
        using_simulator=using_simulator,
        always_restart=env.flag("ALWAYS_RESTART_COMFYUI", False),
        startup_check_interval_s=env.number("STARTUP_CHECK_INTERVAL_S", 1.0, minimum=0.01),
        startup_check_max_tries=env.integer("STARTUP_CHECK_MAX_TRIES", 120, minimum=1),
        http_timeout_s=env.number("COMFYUI_HTTP_TIMEOUT_S", 30.0, minimum=0.1),
        ws_idle_timeout_s=env.number("COMFYUI_WS_IDLE_TIMEOUT_S", 15.0, minimum=0.1),
        ws_reconnect_attempts=env.integer("WEBSOCKET_RECONNECT_ATTEMPTS", 0),
        ws_reconnect_delay_s=env.number("WEBSOCKET_RECONNECT_DELAY_S", 10.0, minimum=0.1),
        ws_trace=env.flag("WEBSOCKET_TRACE", False),
        outputs_colocated=env.flag("COMFYUI_OUTPUTS_COLOCATED", not url),
        inputs_colocated=inputs_colocated,
        keep_outputs=env.flag("KEEP_OUTPUTS", False),
        stall_timeout_s=env.number("COMFYUI_STALL_TIMEOUT_S", 900.0),
    )


def _system_events(env: _Env) -> frozenset[str]:
    raw = env.text("SYSTEM_WEBHOOK_EVENTS", "")
    if not raw:
        return frozenset()
    names = {part.strip() for part in raw.split(",") if part.strip()}
    # compat: salad names storage events without the "storage." prefix.
    names = {f"storage.{name}" if f"storage.{name}" in SYSTEM_EVENT_NAMES else name for name in names}
    if "all" in names:
        return frozenset(SYSTEM_EVENT_NAMES)
    unknown = sorted(names - set(SYSTEM_EVENT_NAMES))
    if unknown:
        raise SettingsError(
            f"SYSTEM_WEBHOOK_EVENTS names unknown events {unknown}; known: all, {', '.join(SYSTEM_EVENT_NAMES)}"
        )
    return frozenset(names)


def _manifest_json(env: _Env) -> str | None:
    raw = env.text("MANIFEST_JSON", None)
    if raw is not None:
        try:
            json.loads(raw)
        except ValueError as exc:
            raise SettingsError(f"MANIFEST_JSON is not valid JSON: {exc}") from None
    return raw


def _webhook_secret(env: _Env) -> str | None:
    secret = env.text("WEBHOOK_SECRET", None)
    if secret is not None:
        try:
            decode_webhook_secret(secret)
        except ValueError as exc:  # the message names WEBHOOK_SECRET and never echoes it
            raise SettingsError(str(exc)) from None
    return secret


def _debug(env: _Env) -> bool:
    """DEBUG (the /api/v1 gateway's name) or RUNPOD_DEBUG (worker-comfyui's): LOG_LEVEL's default becomes DEBUG."""
    return env.flag("DEBUG", False) or env.flag("RUNPOD_DEBUG", False)


def _server_settings(env: _Env) -> ServerSettings:
    return ServerSettings(
        host=env.text("HOST", "::"),
        port=env.integer("PORT", 3000, minimum=1),
        max_body_bytes=int(env.number("MAX_BODY_SIZE_MB", 100.0, minimum=0.001) * 1024 * 1024),
        max_queue_depth=env.integer("MAX_QUEUE_DEPTH", 0),
        shutdown_grace_s=env.number("SHUTDOWN_GRACE_S", 60.0),
        log_level=_log_level(env.text("LOG_LEVEL", "DEBUG" if _debug(env) else "INFO")),
        log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
        sse_heartbeat_s=env.number("SSE_HEARTBEAT_S", 15.0, minimum=0.1),
        api_keys=tuple(key.strip() for key in env.text("API_KEYS", "").split(",") if key.strip()),
        api_keys_file=_api_keys_file(env),
        max_header_bytes=env.integer("MAX_HEADER_BYTES", 64 * 1024, minimum=1024),
        header_timeout_s=env.number("HEADER_TIMEOUT_S", 15.0, minimum=0.1),
        body_read_timeout_s=env.number("BODY_READ_TIMEOUT_S", 30.0, minimum=0.1),
        comfy_passthrough=env.choice("COMFYUI_PASSTHROUGH", "on", ("on", "off", "full")),
    )


# compat: salad's LOG_LEVEL values (trace, warn, fatal) beside Python's.
_LOG_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING"}
_LOG_LEVELS |= {"ERROR": "ERROR", "FATAL": "CRITICAL", "CRITICAL": "CRITICAL"}


def _log_level(raw: str) -> str:
    level = _LOG_LEVELS.get(raw.strip().upper())
    if level is None:
        raise SettingsError(f"LOG_LEVEL={raw!r} must be one of {', '.join(name.lower() for name in _LOG_LEVELS)}")
    return level


def _api_keys_file(env: _Env) -> Path | None:
    path = env.path("API_KEYS_FILE", None)
    if path is not None and not path.is_file():
        raise SettingsError(f"API_KEYS_FILE={str(path)!r} is not a readable file")
    return path


def _job_store(env: _Env) -> Path | None:
    raw = env.text("JOB_STORE", "memory")
    if raw == "memory":
        return None
    if not raw.startswith("sqlite://"):
        raise SettingsError(f"JOB_STORE={raw!r} must be memory or sqlite:///path/to/jobs.db")
    rest = raw[len("sqlite://") :]
    if not rest.strip("/"):
        raise SettingsError(f"JOB_STORE={raw!r} names no file (sqlite:///path/to/jobs.db)")
    return Path(rest) if rest.startswith("/") else Path(rest.lstrip("/"))


def _job_settings(env: _Env) -> JobSettings:
    return JobSettings(
        default_timeout_s=env.number("PROMPT_TIMEOUT_S", 600.0, minimum=0.1),
        max_timeout_s=env.number("PROMPT_MAX_TIMEOUT_S", 24 * 3600.0, minimum=0.1),
        max_input_bytes=int(env.number("MAX_INPUT_SIZE_MB", 512.0, minimum=0.001) * 1024 * 1024),
        download_timeout_s=env.number("INPUT_DOWNLOAD_TIMEOUT_S", 300.0, minimum=0.1),
        max_parallel_downloads=env.integer("MAX_PARALLEL_DOWNLOADS", 8, minimum=1),
        max_graph_nodes=env.integer("MAX_GRAPH_NODES", 10_000, minimum=1),
        records_max=env.integer("JOB_RECORDS_MAX", 1000, minimum=1),
        record_ttl_s=env.number("JOB_RECORD_TTL_S", 3600.0, minimum=1.0),
        outputs_max_bytes=int(env.number("JOB_OUTPUTS_MAX_GB", 2.0) * 1024**3),
        store_path=_job_store(env),
    )


def _webhook_settings(env: _Env, secret: str | None) -> WebhookSettings:
    return WebhookSettings(
        secret=secret,
        retries=env.integer("PROMPT_WEBHOOK_RETRIES", 3),
        timeout_s=env.number("WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1),
        backoff_base_s=env.number("WEBHOOK_BACKOFF_BASE_S", 1.0),
        system_url=env.url("SYSTEM_WEBHOOK_URL", None),
        system_events=_system_events(env),
        system_meta=env.with_prefix("SYSTEM_META_"),
        system_flush_interval_s=env.number("SYSTEM_WEBHOOK_FLUSH_S", 0.5, minimum=0.01),
    )


def _storage_settings(env: _Env) -> StorageSettings:
    return StorageSettings(
        aws_region=env.text("AWS_REGION", env.text("AWS_DEFAULT_REGION", None)),
        aws_endpoint_url=env.url("AWS_ENDPOINT_URL", None),
        azure_connection_string=env.text("AZURE_STORAGE_CONNECTION_STRING", None),
        azure_account=env.text("AZURE_STORAGE_ACCOUNT", None),
        azure_key=env.text("AZURE_STORAGE_KEY", None),
        azure_sas_token=env.text("AZURE_STORAGE_SAS_TOKEN", None),
        hf_token=env.text("HF_TOKEN", None),
        hf_endpoint=env.url("HF_ENDPOINT", "https://huggingface.co"),
        http_auth_header_name=env.text("HTTP_AUTH_HEADER_NAME", None),
        http_auth_header_value=env.text("HTTP_AUTH_HEADER_VALUE", None),
        transfer_timeout_s=env.number("STORAGE_TIMEOUT_S", 600.0, minimum=0.1),
        max_parallel_uploads=env.integer("MAX_PARALLEL_UPLOADS", 4, minimum=1),
        max_base64_fallback_bytes=int(env.number("MAX_BASE64_FALLBACK_MB", 64.0) * 1024 * 1024),
        allow_private_urls=env.flag("ALLOW_PRIVATE_URLS", False),
        trusted_origins=_trusted_origins(env),
    )


def _trusted_origins(env: _Env) -> tuple[str, ...]:
    origins = []
    for raw in env.text("HTTP_TRUSTED_ORIGINS", "").split(","):
        item = raw.strip().rstrip("/")
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise SettingsError(f"HTTP_TRUSTED_ORIGINS: {item!r} is not an origin like https://host:port")
        origins.append(item)
    return tuple(origins)


def _model_settings(env: _Env) -> ModelSettings:
    return ModelSettings(
        manifest_path=env.path("MANIFEST", None),
        manifest_json=_manifest_json(env),
        cache_dir=env.path("CACHE_DIR", Path("~/.cache/comfyui-api").expanduser()),
        lru_cache_size_bytes=int(env.number("LRU_CACHE_SIZE_GB", 0.0) * 1024**3),
        ready_waits_for_after_start=env.flag("READY_WAITS_FOR_MODELS", True),
        download_timeout_s=env.number("MODEL_DOWNLOAD_TIMEOUT_S", 3600.0, minimum=0.1),
    )


def _warmup_settings(env: _Env) -> WarmupSettings:
    return WarmupSettings(
        prompt_file=env.path("WARMUP_PROMPT_FILE", None),
        prompt_url=env.url("WARMUP_PROMPT_URL", None),
        required=env.flag("WARMUP_REQUIRED", False),
        timeout_s=env.number("WARMUP_TIMEOUT_S", 1800.0, minimum=1.0),
    )


_BUCKET_KEY_FILES = (Path("/runpod-volume/keys/gc_hmac.json"), Path("/keys/gc_hmac.json"))


def _runpod_bucket(env: _Env) -> RunpodBucket | None:
    endpoint = env.url("BUCKET_ENDPOINT_URL", None)
    if endpoint is not None:
        key_id = env.text("BUCKET_ACCESS_KEY_ID", None)
        secret = env.text("BUCKET_SECRET_ACCESS_KEY", None)
        if not key_id or not secret:
            raise SettingsError("BUCKET_ENDPOINT_URL needs BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY")
        return _bucket_at(endpoint, env.text("BUCKET_NAME", None), key_id, secret, "BUCKET_ENDPOINT_URL")
    named = env.path("RUNPOD_BUCKET_KEYS_FILE", None)
    for path in (named,) if named is not None else _BUCKET_KEY_FILES:
        if not path.is_file():
            if named is not None:
                raise SettingsError(f"RUNPOD_BUCKET_KEYS_FILE={str(path)!r} is not a readable file")
            continue
        try:
            keys = json.loads(path.read_text(encoding="utf-8"))
            return _bucket_at(
                str(keys["endpoint_url"]),
                keys.get("bucket"),
                str(keys["aws_access_key_id"]),
                str(keys["aws_secret_access_key"]),
                str(path),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SettingsError(
                f"{path}: expected JSON with endpoint_url, bucket, aws_access_key_id, aws_secret_access_key ({exc!r})"
            ) from None
    return None


def _bucket_at(endpoint: str, bucket: str | None, key_id: str, secret: str, source: str) -> RunpodBucket:
    """The bucket is BUCKET_NAME (or the file's `bucket`), else the endpoint's path (`https://host/bucket`), else its
    first host label (`https://bucket.s3.region.amazonaws.com`, as RunPod's own upload helper reads it)."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"{source}: {endpoint!r} is not an http(s) URL")
    path_bucket = parts.path.strip("/").split("/", 1)[0]
    if bucket:
        return RunpodBucket(endpoint.rstrip("/"), bucket, key_id, secret)
    if path_bucket:
        return RunpodBucket(f"{parts.scheme}://{parts.netloc}", path_bucket, key_id, secret)
    label, _, rest = parts.netloc.partition(".")
    if not rest:
        raise SettingsError(f"{source}: cannot tell the bucket from {endpoint!r}; set BUCKET_NAME")
    return RunpodBucket(f"{parts.scheme}://{rest}", label, key_id, secret)


def _runpod_settings(env: _Env) -> RunpodSettings:
    return RunpodSettings(
        bucket=_runpod_bucket(env),
        comfy_org_api_key=env.text("COMFY_ORG_API_KEY", None),
        local_mode=env.flag("LOCAL_MODE", False),
        local_image_path=env.path("LOCAL_IMAGE_PATH", Path("/girs.png")),
        refresh_worker=env.flag("REFRESH_WORKER", False),
        max_result_bytes=int(env.number("RUNPOD_RESULT_LIMIT_MB", 10.0, minimum=0.001) * 1024 * 1024),
    )


def _amqp_url(env: _Env) -> str:
    url = env.text("AMQP_URL", "")
    if url:
        if not url.startswith(("amqp://", "amqps://")):
            raise SettingsError("AMQP_URL must start with amqp:// or amqps://")
        return url
    host = env.text("AMQP_HOST", "")
    if not host:
        return ""
    user = quote(env.text("AMQP_USER", "guest"), safe="")
    password = quote(env.text("AMQP_PASS", "guest"), safe="")
    vhost = quote(env.text("AMQP_VHOST", "/"), safe="")
    port = env.integer("AMQP_PORT", 5672, minimum=1)
    return f"amqp://{user}:{password}@{host}:{port}/{vhost}"


def _amqp_settings(env: _Env) -> AmqpSettings:
    return AmqpSettings(
        url=_amqp_url(env),
        tls_ca_file=env.path("AMQP_TLS_CA_FILE", None),
        tls_cert_file=env.path("AMQP_TLS_CERT_FILE", None),
        tls_key_file=env.path("AMQP_TLS_KEY_FILE", None),
        prefetch=env.integer("AMQP_PREFETCH", 1, minimum=1),
        exchange=env.text("AMQP_EXCHANGE_TOPIC", "runnode.comfyui.topic"),
        dead_letter_exchange=env.text("AMQP_DEAD_LETTER_EXCHANGE", None),
        instance_id=env.text("INSTANCE_ID", None),
        instance_dedicated_id=env.text("INSTANCE_DEDICATED_ID", None),
        instance_workflow_id=env.text("INSTANCE_WORKFLOW_ID", None),
        instance_is_free=env.flag("INSTANCE_IS_FREE", False),
        instance_gpu_vram=env.text("INSTANCE_GPU_VRAM", None),
        heartbeat_enabled=env.flag("HEARTBEAT_ENABLED", True),
        heartbeat_interval_ms=env.integer("HEARTBEAT_INTERVAL", 5000, minimum=100),
        public_url=env.text("COMFY_PUBLIC_URL", None),
        public_ws_url=env.text("COMFY_PUBLIC_WS_URL", None),
        api_url=env.text("API_URL", None),
        supported_models=tuple(m.strip() for m in env.text("SUPPORTED_MODELS", "").split(",") if m.strip()),
    )


ENV_FILE = ".env"


def with_env_file(environ: Mapping[str, str], directory: Path) -> tuple[dict[str, str], Path | None]:
    """`environ` over the variables of `directory/.env` (when there is one): the real environment wins. Also the
    file that was read, to say so in the log."""
    path = directory / ENV_FILE
    if not path.is_file():
        return dict(environ), None
    try:
        from_file = {name: value for name, value in dotenv_values(path).items() if value is not None}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: could not be read ({exc})") from None
    return {**from_file, **environ}, path


def _tracing_settings(env: _Env) -> TracingSettings:
    headers: list[tuple[str, str]] = []
    for item in env.text("OTEL_EXPORTER_OTLP_HEADERS", "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError("OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas")
        headers.append((key.strip(), unquote(value.strip())))
    return TracingSettings(
        otlp_endpoint=env.url("OTEL_EXPORTER_OTLP_ENDPOINT", None),
        otlp_headers=tuple(headers),
        service_name=env.text("OTEL_SERVICE_NAME", "comfyui-api"),
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings tree from an environment mapping (default: os.environ)."""
    env = _Env(os.environ if environ is None else environ)
    data_home = env.path("COMFYUI_API_HOME", Path("~/.local/share/comfyui-api").expanduser())
    webhook_secret = _webhook_secret(env)
    settings = Settings(
        server=_server_settings(env),
        comfy=_comfy_settings(env, data_home),
        jobs=_job_settings(env),
        webhooks=_webhook_settings(env, webhook_secret),
        storage=_storage_settings(env),
        models=_model_settings(env),
        warmup=_warmup_settings(env),
        workflows=WorkflowSettings(workflow_dir=env.path("WORKFLOW_DIR", None)),
        runpod=_runpod_settings(env),
        amqp=_amqp_settings(env),
        tracing=_tracing_settings(env),
    )
    if settings.warmup.prompt_file and settings.warmup.prompt_url:
        raise SettingsError("set only one of WARMUP_PROMPT_FILE and WARMUP_PROMPT_URL")
    if bool(settings.storage.http_auth_header_name) != bool(settings.storage.http_auth_header_value):
        raise SettingsError("HTTP_AUTH_HEADER_NAME and HTTP_AUTH_HEADER_VALUE must be set together")
    return settings


# Every environment variable `load_settings` reads: (name, default, meaning), in the order `--help` lists them.
# tests/unit/test_settings.py checks that this list and the reads above name the same variables.
VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("HOST", "::", "address the API listens on (every interface)"),
    ("PORT", "3000", "port the API listens on"),
    ("CMD", "from COMFY_HOME", "command line that launches ComfyUI"),
    ("COMFY_HOME", "/opt/ComfyUI", "ComfyUI's folder; runs its main.py when CMD is unset"),
    ("COMFYUI_PYTHON", "COMFY_HOME's venv/.venv, else python", "interpreter for COMFY_HOME/main.py"),
    ("COMFYUI_URL", "", "attach to this running ComfyUI instead of launching one"),
    ("COMFYUI_HOST", "", "attach to the ComfyUI on this host (with COMFYUI_PORT) when COMFYUI_URL is unset"),
    ("COMFYUI_PORT", "8188", "port of the ComfyUI on COMFYUI_HOST"),
    ("DIRECT_ADDRESS", "127.0.0.1", "address the launched ComfyUI listens on"),
    ("COMFYUI_PORT_HOST", "8188", "port the launched ComfyUI listens on"),
    ("COMFY_LOG_LEVEL", "ComfyUI's", "debug, info, warning, error or critical: ComfyUI's --verbose (COMFY_HOME only)"),
    ("INPUT_DIR", "COMFY_HOME/input", "ComfyUI's input folder"),
    ("OUTPUT_DIR", "COMFY_HOME/output", "ComfyUI's output folder"),
    ("TEMP_DIR", "COMFY_HOME/temp", "ComfyUI's temp folder"),
    ("MODEL_DIR", "COMFY_HOME/models", "ComfyUI's models folder"),
    ("COMFYUI_API_HOME", "~/.local/share/comfyui-api", "the simulator's folders, and staged inputs when attached"),
    ("ALWAYS_RESTART_COMFYUI", "false", "restart ComfyUI when it exits instead of exiting"),
    ("STARTUP_CHECK_INTERVAL_S", "1", "seconds between readiness checks of ComfyUI at start"),
    ("STARTUP_CHECK_MAX_TRIES", "120", "readiness checks before ComfyUI counts as failed"),
    ("COMFYUI_HTTP_TIMEOUT_S", "30", "timeout of one HTTP call to ComfyUI"),
    ("COMFYUI_WS_IDLE_TIMEOUT_S", "15", "websocket silence before /history is asked"),
    (
        "WEBSOCKET_RECONNECT_ATTEMPTS",
        "0 (never give up)",
        "failed websocket reconnects after which the jobs in flight fail (ComfyUI unavailable)",
    ),
    ("WEBSOCKET_RECONNECT_DELAY_S", "10", "the longest pause between two websocket reconnect attempts"),
    ("WEBSOCKET_TRACE", "false", "log every frame ComfyUI sends on its websocket (at INFO)"),
    ("COMFYUI_OUTPUTS_COLOCATED", "true (launch) / false (attach)", "read outputs from disk instead of /view"),
    (
        "COMFYUI_INPUTS_COLOCATED",
        "true (launch) / false (attach)",
        "ComfyUI reads INPUT_DIR (else inputs are uploaded)",
    ),
    ("KEEP_OUTPUTS", "false", "leave ComfyUI's output files in place after reading them"),
    ("COMFYUI_STALL_TIMEOUT_S", "900 (0 = off)", "work queued and no frame for this long: ComfyUI counts as stalled"),
    ("MAX_BODY_SIZE_MB", "100", "largest request body"),
    ("MAX_HEADER_BYTES", "65536", "largest request line + headers (more: 431)"),
    ("HEADER_TIMEOUT_S", "15", "a request's headers must arrive within this (else 408 and closed)"),
    ("BODY_READ_TIMEOUT_S", "30", "a request body that sends nothing for this long is dropped"),
    ("COMFYUI_PASSTHROUGH", "on", "the /comfyui door: on, off, or full (routes that change ComfyUI passed on too)"),
    ("MAX_QUEUE_DEPTH", "0 (no limit)", "jobs admitted at once; more get 503"),
    ("SHUTDOWN_GRACE_S", "60", "how long running jobs may finish after SIGTERM"),
    ("LOG_LEVEL", "INFO (DEBUG when DEBUG=true)", "log level"),
    ("DEBUG", "false", "true: LOG_LEVEL defaults to DEBUG"),
    ("RUNPOD_DEBUG", "false", "the same as DEBUG (worker-comfyui's name)"),
    ("LOG_FORMAT", "text", "text, or json: one object a line with time, level, logger, message, job_id"),
    (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "",
        "an OTLP/HTTP collector's base URL: a trace a job (needs the otel extra); off when unset",
    ),
    ("OTEL_EXPORTER_OTLP_HEADERS", "", "key=value,... sent with each trace export"),
    ("OTEL_SERVICE_NAME", "comfyui-api", "service.name on the traces"),
    ("SSE_HEARTBEAT_S", "15", "keep-alive interval of event streams"),
    ("API_KEYS", "", "comma-separated keys; when set (or API_KEYS_FILE), every route but /health and /ready needs one"),
    ("API_KEYS_FILE", "", "a file of keys, one a line, read again on SIGHUP"),
    ("PROMPT_TIMEOUT_S", "600", "default timeout_s of a job"),
    ("PROMPT_MAX_TIMEOUT_S", "86400", "largest timeout_s a request may ask for"),
    ("MAX_INPUT_SIZE_MB", "512", "largest staged input file"),
    ("INPUT_DOWNLOAD_TIMEOUT_S", "300", "one input download, whole"),
    ("MAX_PARALLEL_DOWNLOADS", "8", "input downloads at once"),
    ("MAX_GRAPH_NODES", "10000", "nodes a graph may have"),
    ("JOB_STORE", "memory", "job records in memory, or sqlite:///path/jobs.db to keep them across restarts"),
    ("JOB_RECORDS_MAX", "1000", "job records kept"),
    ("JOB_RECORD_TTL_S", "3600", "a finished job's record is dropped this long after it ended"),
    ("JOB_OUTPUTS_MAX_GB", "2", "output files kept for finished jobs, in all"),
    ("WEBHOOK_SECRET", "", "base64 key (optionally whsec_) that signs webhook_v2 and system events"),
    ("PROMPT_WEBHOOK_RETRIES", "3", "attempts per webhook"),
    ("WEBHOOK_TIMEOUT_S", "10", "one webhook attempt"),
    ("WEBHOOK_BACKOFF_BASE_S", "1", "first retry delay (doubles, with jitter)"),
    ("SYSTEM_WEBHOOK_URL", "", "where system events go"),
    ("SYSTEM_WEBHOOK_EVENTS", "", "comma list of system events, or all"),
    ("SYSTEM_META_", "", "SYSTEM_META_<key>=<value>: metadata sent with every system event"),
    ("SYSTEM_WEBHOOK_FLUSH_S", "0.5", "batching window of system events"),
    ("AWS_REGION", "", "S3 region"),
    ("AWS_DEFAULT_REGION", "", "S3 region, when AWS_REGION is unset"),
    ("AWS_ENDPOINT_URL", "", "S3-compatible endpoint (R2, MinIO, GCS HMAC)"),
    ("AZURE_STORAGE_CONNECTION_STRING", "", "Azure Blob connection string"),
    ("AZURE_STORAGE_ACCOUNT", "", "Azure Blob account (with a key or SAS token)"),
    ("AZURE_STORAGE_KEY", "", "Azure Blob account key"),
    ("AZURE_STORAGE_SAS_TOKEN", "", "Azure Blob SAS token"),
    ("HF_TOKEN", "", "Hugging Face token"),
    ("HF_ENDPOINT", "https://huggingface.co", "Hugging Face Hub endpoint"),
    ("HTTP_AUTH_HEADER_NAME", "", "header sent with http_upload and URL downloads"),
    ("HTTP_AUTH_HEADER_VALUE", "", "its value"),
    ("STORAGE_TIMEOUT_S", "600", "one upload or storage download"),
    ("MAX_PARALLEL_UPLOADS", "4", "uploads at once"),
    ("MAX_BASE64_FALLBACK_MB", "64", "inline outputs whose upload failed, up to this much"),
    ("ALLOW_PRIVATE_URLS", "false", "let request URLs reach loopback, private and link-local addresses"),
    ("HTTP_TRUSTED_ORIGINS", "", "comma-separated origins (scheme://host:port) request URLs may reach anyway"),
    ("MANIFEST", "", "manifest file (.yml, .yaml or .json) applied at start"),
    ("MANIFEST_JSON", "", "manifest as JSON (wins over MANIFEST)"),
    ("CACHE_DIR", "~/.cache/comfyui-api", "model cache folder"),
    ("LRU_CACHE_SIZE_GB", "0 (off)", "model cache size before least-recently-used files go"),
    ("READY_WAITS_FOR_MODELS", "true", "/ready waits for the manifest's after_start models"),
    ("MODEL_DOWNLOAD_TIMEOUT_S", "3600", "one model download"),
    ("WARMUP_PROMPT_FILE", "", "a graph run after every ComfyUI start, before /ready"),
    ("WARMUP_PROMPT_URL", "", "the same, fetched from a URL"),
    ("WARMUP_REQUIRED", "false", "exit when the warmup fails"),
    ("WARMUP_TIMEOUT_S", "1800", "the warmup's timeout"),
    ("WORKFLOW_DIR", "", "typed workflow endpoints (graph + input schema files)"),
    ("BUCKET_ENDPOINT_URL", "", "runpod: S3-compatible bucket for outputs (https://bucket.s3.region.amazonaws.com)"),
    ("BUCKET_ACCESS_KEY_ID", "", "runpod: its access key id"),
    ("BUCKET_SECRET_ACCESS_KEY", "", "runpod: its secret"),
    ("BUCKET_NAME", "from BUCKET_ENDPOINT_URL", "runpod: the bucket, when the endpoint does not name it"),
    ("RUNPOD_BUCKET_KEYS_FILE", "/runpod-volume/keys/gc_hmac.json, /keys/gc_hmac.json", "runpod: bucket key file"),
    ("COMFY_ORG_API_KEY", "", "runpod: key for ComfyUI's API nodes (a job's comfy_org_api_key wins)"),
    ("LOCAL_MODE", "false", "runpod: answer every job with LOCAL_IMAGE_PATH, without ComfyUI (a smoke test)"),
    ("LOCAL_IMAGE_PATH", "/girs.png", "runpod: the image LOCAL_MODE answers with"),
    ("REFRESH_WORKER", "false", "runpod: ask RunPod for a fresh worker after each job"),
    ("RUNPOD_RESULT_LIMIT_MB", "10", "runpod: largest result; more fails the job naming the output"),
    ("AMQP_URL", "", "amqp(s)://user:pass@host:5672/vhost: take tasks from RabbitMQ (off when unset)"),
    ("AMQP_HOST", "", "amqp: the broker's host, when AMQP_URL is unset"),
    ("AMQP_PORT", "5672", "amqp: its port"),
    ("AMQP_USER", "guest", "amqp: user"),
    ("AMQP_PASS", "guest", "amqp: password"),
    ("AMQP_VHOST", "/", "amqp: virtual host"),
    ("AMQP_TLS_CA_FILE", "", "amqps: CA bundle"),
    ("AMQP_TLS_CERT_FILE", "", "amqps: client certificate"),
    ("AMQP_TLS_KEY_FILE", "", "amqps: client key"),
    ("AMQP_PREFETCH", "1", "amqp: tasks taken at once"),
    ("AMQP_EXCHANGE_TOPIC", "runnode.comfyui.topic", "amqp: topic exchange of events"),
    ("AMQP_DEAD_LETTER_EXCHANGE", "", "amqp: where messages that are not JSON go (else rejected)"),
    ("INSTANCE_ID", "from the host name", "amqp: this instance's id in the registry"),
    ("INSTANCE_DEDICATED_ID", "", "amqp: take tasks from q.instance.<id>"),
    ("INSTANCE_WORKFLOW_ID", "", "amqp: take tasks from q.workflow.<id>"),
    ("INSTANCE_IS_FREE", "false", "amqp: take tasks from q.gpu.free"),
    ("INSTANCE_GPU_VRAM", "20G", "amqp: 20G | 40G | 70G: take tasks from q.gpu.<vram>"),
    ("HEARTBEAT_ENABLED", "true", "amqp: send service.instance.heartbeat"),
    ("HEARTBEAT_INTERVAL", "5000", "amqp: heartbeat interval in ms"),
    ("COMFY_PUBLIC_URL", "", "amqp registry: server_url"),
    ("COMFY_PUBLIC_WS_URL", "", "amqp registry: ws_url"),
    ("API_URL", "", "amqp registry: api_url"),
    ("SUPPORTED_MODELS", "", "amqp registry: comma-separated supported_models"),
)
