"""comfyui-api: a production HTTP API in front of ComfyUI (`python -m comfyui_api`, or the `comfyui-api` command).

Importing the package starts nothing and reads no environment: `settings.load_settings()` reads it, at start-up.
"""
