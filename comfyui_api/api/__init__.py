"""The HTTP edge: Litestar controllers, wire schemas, and the one mapping from domain errors to HTTP responses.

Thin adapters over `jobs/`, `delivery/`, `models/` and `storage/`; nothing here parses a ComfyUI websocket message.
"""
