"""Model URLs in loader inputs: downloaded through the cache into the folder each loader reads, replaced by the
file name, pinned until released; failures name `prompt.<node>.inputs.<name>`. Also end to end against the
simulator: the folder map is learnt from its /object_info and it lists the placed file."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.comfy.client import ComfyClient
from comfyui_api.errors import InputStagingError
from comfyui_api.models.cache import ModelCache
from comfyui_api.models.loaders import STATIC_LOADER_INPUTS, ModelResolver, discover_loader_folders
from comfyui_api.storage.base import Credential
from tests.component.models.model_server import ModelServer, serve_models
from tests.contract.harness import Target, TargetSpec, start_target

LOADERS = sorted(STATIC_LOADER_INPUTS.items())


def file_name(class_type: str, input_name: str) -> str:
    return f"{class_type}-{input_name}.safetensors"


def file_path(class_type: str, input_name: str) -> str:
    return f"/models/{class_type}/{file_name(class_type, input_name)}"


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    files = {file_path(*key): f"{key}".encode() for key, _ in LOADERS}
    files["/models/other/shared.safetensors"] = b"shared"
    files["/models/Slow/a.safetensors"] = b"a" * 10
    async with serve_models(ModelServer(files=files)) as running:
        yield running


@pytest.fixture
async def cache(tmp_path: Path) -> AsyncIterator[ModelCache]:
    model_cache = ModelCache(tmp_path / "cache")
    try:
        yield model_cache
    finally:
        await model_cache.aclose()


def loader_graph(server: ModelServer) -> dict[str, Any]:
    graph: dict[str, Any] = {}
    for index, ((class_type, input_name), _) in enumerate(LOADERS, start=1):
        graph[str(index)] = {
            "class_type": class_type,
            "inputs": {input_name: server.url(file_path(class_type, input_name), "X-Amz-Signature=abc"), "n": 1},
        }
    return graph


async def test_each_loader_url_lands_in_its_folder(server: ModelServer, cache: ModelCache, tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    resolver = ModelResolver(cache, model_dir)
    graph = loader_graph(server)
    resolved, lease = await resolver.resolve_model_urls(graph)
    try:
        for index, ((class_type, input_name), folder) in enumerate(LOADERS, start=1):
            node = resolved[str(index)]
            assert node["inputs"][input_name] == file_name(class_type, input_name)
            assert node["inputs"]["n"] == 1
            placed = model_dir / folder / file_name(class_type, input_name)
            assert placed.read_bytes() == f"{(class_type, input_name)}".encode(), class_type
        assert len(lease.paths) == len(LOADERS)
        assert all(path.parent == tmp_path / "cache" for path in lease.paths)
    finally:
        lease.release()
    assert graph["1"]["inputs"][LOADERS[0][0][1]].startswith("http://")  # the caller's graph is untouched


async def test_non_loader_inputs_links_and_file_names_are_left_alone(
    server: ModelServer, cache: ModelCache, tmp_path: Path
) -> None:
    url = server.url("/models/other/shared.safetensors")
    graph = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "https://example.invalid/cat.png"}},
        "2": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "local.safetensors"}},
        "3": {"class_type": "LoraLoader", "inputs": {"lora_name": url, "model": ["2", 0], "clip": ["2", 1]}},
        "4": {"class_type": "MyCustomLoraStack", "inputs": {"lora_name": url}},
    }
    resolved, lease = await ModelResolver(cache, tmp_path / "models").resolve_model_urls(graph)
    lease.release()
    assert resolved["1"] == graph["1"] and resolved["2"] == graph["2"]
    assert resolved["3"]["inputs"] == {"lora_name": "shared.safetensors", "model": ["2", 0], "clip": ["2", 1]}
    assert resolved["4"]["inputs"] == {"lora_name": "shared.safetensors"}
    assert server.gets["/models/other/shared.safetensors"] == 1


async def test_two_urls_with_one_file_name_do_not_overwrite_each_other(
    server: ModelServer, cache: ModelCache, tmp_path: Path
) -> None:
    first = server.url("/models/other/shared.safetensors")
    server.files["/models/Slow/shared.safetensors"] = b"another model"
    second = server.url("/models/Slow/shared.safetensors")
    resolver = ModelResolver(cache, tmp_path / "models")
    one, lease_one = await resolver.resolve_model_urls(
        {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": first}}}
    )
    two, lease_two = await resolver.resolve_model_urls(
        {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": second}}}
    )
    lease_one.release()
    lease_two.release()
    names = one["1"]["inputs"]["lora_name"], two["1"]["inputs"]["lora_name"]
    assert names[0] == "shared.safetensors" and names[1].startswith("shared.") and names[1] != names[0]
    loras = tmp_path / "models" / "loras"
    assert (loras / names[0]).read_bytes() == b"shared" and (loras / names[1]).read_bytes() == b"another model"


async def test_a_failed_download_names_the_input_and_pins_nothing(
    server: ModelServer, cache: ModelCache, tmp_path: Path
) -> None:
    graph = {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": server.url("/models/Slow/a.safetensors")},
        },
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": server.url("/models/none.safetensors", "token=t0p")}},
    }
    with pytest.raises(InputStagingError) as caught:
        await ModelResolver(cache, tmp_path / "models").resolve_model_urls(graph)
    error = caught.value
    assert error.field == "prompt.7.inputs.vae_name"
    assert "HTTP 404" in error.message and "t0p" not in error.message
    assert error.to_dict()["field"] == "prompt.7.inputs.vae_name"
    assert cache.usage()["pinned_entries"] == 0


async def test_credentials_reach_the_download(cache: ModelCache, tmp_path: Path) -> None:
    private = ModelServer(files={"/p/model.safetensors": b"private"}, bearer="tok")
    async with serve_models(private) as running:
        graph = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": running.url("/p/model.safetensors")}}}
        resolver = ModelResolver(cache, tmp_path / "models")
        with pytest.raises(InputStagingError, match="HTTP 401"):
            await resolver.resolve_model_urls(graph)
        credentials = [Credential(url_pattern=running.base_url + "/p/*", auth={"type": "bearer", "token": "tok"})]
        resolved, lease = await resolver.resolve_model_urls(graph, credentials)
        lease.release()
    assert resolved["1"]["inputs"]["unet_name"] == "model.safetensors"
    assert (tmp_path / "models" / "diffusion_models" / "model.safetensors").read_bytes() == b"private"


@pytest.fixture(scope="module")
def simulator() -> Iterator[Target]:
    spec = TargetSpec(url=None, comfyui_dir=None, python=sys.executable, url_is_simulator=False)
    target = start_target(spec)
    try:
        yield target
    finally:
        target.stop()


async def test_against_the_simulator_object_info(simulator: Target, server: ModelServer, cache: ModelCache) -> None:
    assert simulator.scratch is not None
    model_dir = simulator.scratch / "models"  # the simulator's default models directory (its cwd is the scratch)
    client = ComfyClient(simulator.base_url, timeout_s=10)
    try:
        folders = await discover_loader_folders(client)
        assert folders.discovered.get(("CheckpointLoaderSimple", "ckpt_name")) == "checkpoints"
        url = server.url(file_path("CheckpointLoaderSimple", "ckpt_name"))
        graph = {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": url}}}
        resolved, lease = await ModelResolver(cache, model_dir, folders).resolve_model_urls(graph)
        lease.release()
        name = file_name("CheckpointLoaderSimple", "ckpt_name")
        assert resolved["4"]["inputs"]["ckpt_name"] == name
        assert name in await client.list_models("checkpoints")
    finally:
        await client.aclose()
