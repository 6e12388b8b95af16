"""A protocol-faithful stand-in for ComfyUI 0.3.64's HTTP and websocket API, for tests and local development.

`python -m comfyui_api.simulator [ComfyUI flags]` serves it; `Simulator` (simulator.py) holds all its state.
It never imports anything else from comfyui_api, so it can stand in for ComfyUI behind any client.
"""
