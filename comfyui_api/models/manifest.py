"""The environment manifest: parse and validate MANIFEST / MANIFEST_JSON into frozen dataclasses.

Pure parsing: no subprocess, no network, no filesystem writes (it reads the manifest file only). Applying a manifest
is `provisioner.py`'s job. Every error names the offending entry, e.g. `custom_nodes[2]: ...`.

Schema (every section optional; YAML or JSON):

    apt: [libgl1, ffmpeg]                      # Debian package names, optionally `name=version`
    pip: ["onnxruntime==1.19.2", "--extra-index-url https://..."]  # requirement strings; `-...` entries are options
    custom_nodes:
      - comfyui-kjnodes                        # a registry name (installed with comfy-cli), optionally `name@version`
      - https://github.com/owner/repo@v1.2     # a git URL; the ref may also be given as /tree/<ref>, /commit/<sha>,
                                               # /releases/tag/<tag>, /-/tree/<ref> or /-/commit/<sha>
    models:
      before_start:                            # fetched before ComfyUI starts
        - {url: https://host/sdxl.safetensors, local_path: checkpoints/sdxl.safetensors}
      after_start:                             # fetched in the background once ComfyUI is up
        - {url: s3://bucket/lora.safetensors, local_path: /opt/ComfyUI/models/loras/lora.safetensors}

`local_path` is relative to the model directory (MODEL_DIR) or absolute. A relative path starting with `models/` is
read as relative to COMFY_HOME's model directory too (`# compat: salad`, whose manifests use that form).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

SECTIONS = ("apt", "pip", "custom_nodes", "models")
MODEL_PHASES = ("before_start", "after_start")

_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.\-]*(:[a-z0-9\-]+)?(=[A-Za-z0-9.+~:\-]+)?$")
_REGISTRY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_REGISTRY_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")
_NODE_DIR_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_GIT_REF = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./+\-]*$")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_GIT_SCHEMES = ("https", "http", "ssh", "git", "file")
# Path forms that carry a ref inside a web URL, most specific first (GitLab's `/-/` forms before GitHub's).
_REF_SUFFIXES = ("/-/tree/", "/-/commit/", "/releases/tag/", "/tree/", "/commit/")


class ManifestError(ValueError):
    """The manifest is unreadable or invalid; the message names the source and the entry."""


@dataclass(frozen=True)
class RegistryNode:
    """A custom node from the Comfy registry, installed through comfy-cli."""

    name: str
    version: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}" if self.version else self.name


@dataclass(frozen=True)
class GitNode:
    """A custom node cloned from git into `<COMFY_HOME>/custom_nodes/<name>`, checked out at `ref` when given."""

    url: str
    name: str
    ref: str | None = None


CustomNode = RegistryNode | GitNode


@dataclass(frozen=True)
class ModelFile:
    """One model file: fetched from `url` and placed at the absolute `local_path`. `entry` names it for messages."""

    url: str
    local_path: Path
    entry: str


@dataclass(frozen=True)
class Manifest:
    apt: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()
    custom_nodes: tuple[CustomNode, ...] = ()
    before_start: tuple[ModelFile, ...] = ()
    after_start: tuple[ModelFile, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.apt or self.pip or self.custom_nodes or self.before_start or self.after_start)

    @property
    def model_urls(self) -> tuple[str, ...]:
        """Every model URL the manifest names (the operator's own, so the outbound guard trusts their origins)."""
        return tuple(model.url for model in (*self.before_start, *self.after_start))


def load_manifest(*, manifest_path: Path | None, manifest_json: str | None, model_dir: Path) -> Manifest | None:
    """Read the manifest named by MANIFEST_JSON (wins) or MANIFEST; None when neither is set."""
    if manifest_json is not None:
        try:
            data = json.loads(manifest_json)
        except ValueError as exc:
            raise ManifestError(f"MANIFEST_JSON is not valid JSON: {exc}") from None
        return parse_manifest(data, model_dir=model_dir, source="MANIFEST_JSON")
    if manifest_path is None:
        return None
    source = f"MANIFEST={manifest_path}"
    suffix = manifest_path.suffix.lower()
    if suffix not in (".json", ".yml", ".yaml"):
        raise ManifestError(f"{source}: the file name must end in .json, .yml or .yaml")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"{source}: cannot read the file: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ManifestError(f"{source}: not valid {'JSON' if suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_manifest(data, model_dir=model_dir, source=source)


def parse_manifest(data: Any, *, model_dir: Path, source: str = "manifest") -> Manifest:
    """Validate already-decoded manifest data. An empty document is an empty manifest."""
    if data is None:
        return Manifest()
    if not isinstance(data, Mapping):
        raise ManifestError(f"{source}: the manifest must be a mapping with sections {', '.join(SECTIONS)}")
    unknown = sorted(str(key) for key in data if key not in SECTIONS)
    if unknown:
        raise ManifestError(f"{source}: unknown section(s) {unknown}; known sections: {', '.join(SECTIONS)}")
    try:
        apt = tuple(_apt_package(item, f"apt[{i}]") for i, item in enumerate(_list(data, "apt")))
        pip = tuple(_pip_requirement(item, f"pip[{i}]") for i, item in enumerate(_list(data, "pip")))
        nodes = tuple(
            parse_custom_node(item, f"custom_nodes[{i}]") for i, item in enumerate(_list(data, "custom_nodes"))
        )
        before, after = _models(data.get("models"), model_dir)
    except ManifestError as exc:
        raise ManifestError(f"{source}: {exc}") from None
    _reject_duplicates([(node.name, f"custom_nodes[{i}]") for i, node in enumerate(nodes)], source, "custom node")
    _reject_duplicates([(str(m.local_path), m.entry) for m in before + after], source, "local_path")
    return Manifest(apt=apt, pip=pip, custom_nodes=nodes, before_start=before, after_start=after)


def parse_custom_node(value: Any, entry: str) -> CustomNode:
    """A registry name (`name` or `name@version`) or a git URL with an optional ref."""
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{entry}: expected a registry name or a git URL, got {value!r}")
    text = value.strip()
    if _URL_SCHEME.match(text) or text.startswith("git@"):
        return _git_node(text, entry)
    name, _, version = text.partition("@")
    if not _REGISTRY_NAME.match(name) or (version and not _REGISTRY_VERSION.match(version)):
        raise ManifestError(
            f"{entry}: {text!r} is neither a registry node name (letters, digits, '_', '-', '.', optional @version)"
            " nor a git URL (https://, ssh://, git@, file://)"
        )
    return RegistryNode(name=name, version=version or None)


def _git_node(text: str, entry: str) -> GitNode:
    url, ref = _split_git_ref(text)
    if not text.startswith("git@"):
        scheme = urlsplit(url).scheme.lower()
        if scheme not in _GIT_SCHEMES:
            raise ManifestError(f"{entry}: {scheme}:// is not a git URL scheme; use one of {', '.join(_GIT_SCHEMES)}")
    if ref is not None and not _GIT_REF.match(ref):
        raise ManifestError(f"{entry}: {ref!r} is not a valid git ref")
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = tail[: -len(".git")] if tail.endswith(".git") else tail
    if not name or not _NODE_DIR_NAME.match(name):
        raise ManifestError(f"{entry}: cannot derive a folder name from {url!r}")
    return GitNode(url=url, name=name, ref=ref)


def _split_git_ref(text: str) -> tuple[str, str | None]:
    """`repo@ref`, `.../tree/<ref>`, `.../commit/<sha>`, ... -> (clone URL, ref)."""
    if text.lower().startswith(("https://", "http://")):
        for marker in _REF_SUFFIXES:
            base, found, ref = text.partition(marker)
            if found and base and ref.strip("/"):
                return base, ref.strip("/")
    body = text[len("git@") :] if text.startswith("git@") else text
    last_slash = body.rfind("/")
    at = body.rfind("@")
    if at > last_slash >= 0 and at < len(body) - 1:
        prefix = text[: len(text) - len(body)]
        return prefix + body[:at], body[at + 1 :]
    return text, None


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ManifestError(f"{key}: expected a list, got {type(value).__name__}")
    return value


def _apt_package(value: Any, entry: str) -> str:
    if not isinstance(value, str) or not _APT_NAME.match(value.strip()):
        raise ManifestError(f"{entry}: {value!r} is not a Debian package name (e.g. libgl1 or ffmpeg=7:5.1.6-0)")
    return value.strip()


def _pip_requirement(value: Any, entry: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{entry}: expected a requirement string such as 'numpy>=1.26', got {value!r}")
    text = value.strip()
    if text.startswith("-"):
        try:
            shlex.split(text)
        except ValueError as exc:
            raise ManifestError(f"{entry}: cannot split the pip option {text!r}: {exc}") from None
    return text


def _models(value: Any, model_dir: Path) -> tuple[tuple[ModelFile, ...], tuple[ModelFile, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, Mapping):
        raise ManifestError(f"models: expected a mapping with {' and/or '.join(MODEL_PHASES)}")
    unknown = sorted(str(key) for key in value if key not in MODEL_PHASES)
    if unknown:
        raise ManifestError(f"models: unknown key(s) {unknown}; known: {', '.join(MODEL_PHASES)}")
    phases = []
    for phase in MODEL_PHASES:
        items = _list(value, phase) if phase in value else []
        phases.append(tuple(_model_file(item, f"models.{phase}[{i}]", model_dir) for i, item in enumerate(items)))
    return phases[0], phases[1]


def _model_file(value: Any, entry: str, model_dir: Path) -> ModelFile:
    if not isinstance(value, Mapping):
        raise ManifestError(f"{entry}: expected a mapping with url and local_path")
    unknown = sorted(str(key) for key in value if key not in ("url", "local_path"))
    if unknown:
        raise ManifestError(f"{entry}: unknown key(s) {unknown}; known: url, local_path")
    url = value.get("url")
    if not isinstance(url, str) or not _URL_SCHEME.match(url.strip()):
        raise ManifestError(f"{entry}.url: expected a URL such as https://host/model.safetensors, got {url!r}")
    local_path = value.get("local_path")
    if not isinstance(local_path, str) or not local_path.strip():
        raise ManifestError(f"{entry}.local_path: expected a file path, got {local_path!r}")
    return ModelFile(url=url.strip(), local_path=resolve_local_path(local_path.strip(), model_dir, entry), entry=entry)


def resolve_local_path(local_path: str, model_dir: Path, entry: str) -> Path:
    """Absolute paths stay; relative ones are under the model dir and may not climb out of it."""
    if local_path.endswith("/"):
        raise ManifestError(f"{entry}.local_path: {local_path!r} names a folder; give the file name too")
    pure = PurePosixPath(local_path)
    if ".." in pure.parts:
        raise ManifestError(f"{entry}.local_path: {local_path!r} may not contain '..'")
    if pure.is_absolute():
        return Path(pure)
    if pure.parts[0] == "models" and len(pure.parts) > 2:  # compat: salad (paths relative to COMFY_HOME)
        pure = PurePosixPath(*pure.parts[1:])
    return model_dir / pure


def _reject_duplicates(pairs: list[tuple[str, str]], source: str, what: str) -> None:
    seen: dict[str, str] = {}
    for key, entry in pairs:
        if key in seen:
            raise ManifestError(f"{source}: {entry}: {what} {key!r} is already given by {seen[key]}")
        seen[key] = entry
