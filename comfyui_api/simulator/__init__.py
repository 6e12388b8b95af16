"""A protocol-faithful stand-in for ComfyUI 0.3.64's HTTP and websocket API, for tests and local development.

`python -m comfyui_api.simulator [ComfyUI flags]` serves it; `Simulator` (simulator.py) holds all its state.
It never imports anything else from comfyui_api, so it can stand in for ComfyUI behind any client.

Its array maths and video codecs come with the `simulator` extra (`pip install 'comfyui-api[simulator]'`), so that
a server in front of a real ComfyUI installs without them.
"""

from __future__ import annotations

import importlib.util

# What the `simulator` extra brings (import names); the server itself needs none of them.
EXTRA_MODULES = ("numpy", "av")
INSTALL_HINT = "pip install 'comfyui-api[simulator]'"


def missing_modules() -> list[str]:
    """The simulator's own dependencies that are not installed."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
