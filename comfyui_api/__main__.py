"""`python -m comfyui_api`: the `comfyui-api` command."""

from __future__ import annotations

import sys

from comfyui_api.cli import main

if __name__ == "__main__":
    sys.exit(main())
