"""Websocket sessions recorded from a real ComfyUI, for the comfy/ unit tests: where they live and how to load one.

Reads files only; tests that need them carry `needs_captures` and are skipped where no copy exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

_REPO = Path(__file__).resolve().parents[3]
_CAPTURE_DIRS = (
    _REPO / "tests" / "fixtures" / "comfyui" / "captures",  # vendored copy, when present
    _REPO.parent / "shared" / "comfyui" / "captures",  # the reference captures beside the checkout
)
CAPTURES = next((path for path in _CAPTURE_DIRS if path.is_dir()), _CAPTURE_DIRS[0])
needs_captures = pytest.mark.skipif(not CAPTURES.is_dir(), reason="recorded ComfyUI sessions not available")


def load_capture(name: str) -> Any:
    return json.loads((CAPTURES / name).read_text())
