"""Everything that talks to ComfyUI: process, HTTP client, websocket events, graph helpers. Knows nothing about jobs."""
