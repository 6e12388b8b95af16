"""Bytes <-> URLs: S3, Azure Blob, Hugging Face and plain HTTP behind one protocol (`base.StorageProvider`).

The public surface is `StorageRegistry` (registry.py): built once with `StorageRegistry.from_settings(...)`, it
validates upload targets at request time, downloads inputs and uploads outputs. Nothing here knows about jobs' graphs.
"""

from __future__ import annotations

from comfyui_api.storage.base import StorageEvent, StorageProvider, UploadedFile
from comfyui_api.storage.registry import UPLOAD_REQUEST_KEYS, StorageRegistry

__all__ = ["UPLOAD_REQUEST_KEYS", "StorageEvent", "StorageProvider", "StorageRegistry", "UploadedFile"]
