"""The installed package's version (one place: pyproject.toml), for `--version`, the OpenAPI document and /health."""

from __future__ import annotations

import functools
import importlib.metadata


@functools.cache  # the installed package does not change under a running process; the lookup scans sys.path
def package_version() -> str:
    try:
        return importlib.metadata.version("comfyui-api")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"
