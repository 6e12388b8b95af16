"""Models and the environment they need: the manifest (apt, pip, custom nodes, models before/after start), the
URL-keyed model cache with LRU eviction and pins, loader URL resolution, and named downloads for POST /download.

Entry point for the app: `services.ModelServices` (built from settings). Pieces: `manifest` (schema),
`provisioner` (applying it), `cache` (downloads, LRU, pins, placement), `loaders` (graph URLs -> files),
`library` (named downloads), `download` (the downloader seam and its http default).
"""
