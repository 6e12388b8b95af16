"""The model subsystem built from environment settings, as the app will build it: manifest applied before start,
after_start models holding readiness, LRU limit and cache dir from the environment, loader URLs resolved."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfyui_api.models.manifest import ManifestError
from comfyui_api.models.services import ModelServices
from comfyui_api.settings import load_settings
from tests.component.models.model_server import ModelServer, serve_models


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    files = {"/m/base.safetensors": b"b" * 40, "/m/late.safetensors": b"l" * 30, "/m/lora.safetensors": b"r" * 50}
    async with serve_models(ModelServer(files=files)) as running:
        yield running


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "COMFYUI_API_HOME": str(tmp_path / "home"),
        "MODEL_DIR": str(tmp_path / "models"),
        "CACHE_DIR": str(tmp_path / "cache"),
        **extra,
    }


async def test_built_from_settings(server: ModelServer, tmp_path: Path) -> None:
    manifest = {
        "models": {
            "before_start": [{"url": server.url("/m/base.safetensors"), "local_path": "checkpoints/base.safetensors"}],
            "after_start": [{"url": server.url("/m/late.safetensors"), "local_path": "vae/late.safetensors"}],
        }
    }
    settings = load_settings(
        environment(
            tmp_path, MANIFEST_JSON=json.dumps(manifest), LRU_CACHE_SIZE_GB="0.000001", READY_WAITS_FOR_MODELS="true"
        )
    )
    models = ModelServices.from_settings(settings.models, settings.comfy)
    try:
        assert models.cache.max_size_bytes == 1073  # 1e-6 GiB
        reports = await models.apply_manifest_before_start()
        assert [r.action for r in reports] == ["downloaded"]
        assert (tmp_path / "models" / "checkpoints" / "base.safetensors").exists()
        assert models.blocks_ready  # after_start not started yet: pending
        models.start_after_start()
        assert models.provisioner is not None
        await models.provisioner.wait_after_start()
        assert not models.blocks_ready and models.after_start.done
        graph = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": server.url("/m/lora.safetensors")}}}
        resolved, lease = await models.resolver.resolve_model_urls(graph)
        lease.release()
        assert resolved["1"]["inputs"]["lora_name"] == "lora.safetensors"
        assert (tmp_path / "models" / "loras" / "lora.safetensors").exists()
    finally:
        await models.aclose()
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".meta"] * 3 + [".safetensors"] * 3


async def test_without_a_manifest_nothing_is_applied_and_readiness_is_not_held(tmp_path: Path) -> None:
    settings = load_settings(environment(tmp_path))
    models = ModelServices.from_settings(settings.models, settings.comfy)
    try:
        assert await models.apply_manifest_before_start() == []
        assert models.start_after_start().finished and not models.blocks_ready
        assert (tmp_path / "cache").is_dir()
    finally:
        await models.aclose()


def test_a_bad_manifest_fails_at_construction_naming_the_entry(tmp_path: Path) -> None:
    settings = load_settings(environment(tmp_path, MANIFEST_JSON=json.dumps({"custom_nodes": ["ok", "no way"]})))
    with pytest.raises(ManifestError, match=r"^MANIFEST_JSON: custom_nodes\[1\]: "):
        ModelServices.from_settings(settings.models, settings.comfy)
