"""HTTP conventions: /x and /api/x twins, bare error statuses, 405 text, origin check, GET endpoint shapes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.contract import versions
from tests.contract.conftest import StartTarget
from tests.contract.harness import Target, wait_idle

TWINS = ["/system_stats", "/queue", "/prompt", "/history", "/embeddings", "/features", "/models",
         "/models/checkpoints", "/object_info/ImageInvert", "/history/no-such-prompt"]  # fmt: skip


def assert_empty(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.content == b"", f"expected an empty body, got {response.content[:200]!r}"


def json_keys(value: object) -> object:
    """The key structure of a JSON value (values dropped): what two answers of one endpoint share."""
    if isinstance(value, dict):
        return {key: json_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_keys(item) for item in value[:1]]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "number"  # ram_free and the like differ between two calls
    return type(value).__name__


@pytest.mark.parametrize("path", TWINS)
async def test_every_route_has_an_api_twin(http: httpx.AsyncClient, path: str) -> None:
    await wait_idle(http)  # history and queue must not change between the two calls
    plain, prefixed = await http.get(path), await http.get("/api" + path)
    assert plain.status_code == prefixed.status_code == 200
    assert plain.headers["content-type"] == prefixed.headers["content-type"] == "application/json; charset=utf-8"
    assert json_keys(plain.json()) == json_keys(prefixed.json())


async def test_unknown_paths_are_404_without_body(http: httpx.AsyncClient) -> None:
    assert_empty(await http.get("/does-not-exist"), 404)
    assert_empty(await http.get("/api/does-not-exist"), 404)
    assert_empty(await http.get("/models/does-not-exist"), 404)


@pytest.mark.parametrize(("method", "path"), [("POST", "/system_stats"), ("DELETE", "/queue"), ("PUT", "/prompt")])
async def test_wrong_method_is_405_text(http: httpx.AsyncClient, method: str, path: str) -> None:
    response = await http.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "405: Method Not Allowed"


async def test_options_is_200_empty(http: httpx.AsyncClient) -> None:
    assert_empty(await http.options("/prompt"), 200)


async def test_foreign_origin_is_403_and_matching_origin_passes(http: httpx.AsyncClient, target: Target) -> None:
    foreign = await http.post("/prompt", json={"prompt": {}}, headers={"Origin": "http://evil.example.com"})
    assert_empty(foreign, 403)
    host = target.base_url.removeprefix("http://")
    matching = await http.get("/queue", headers={"Origin": f"http://{host}"})
    assert matching.status_code == 200
    assert set(matching.json()) == {"queue_running", "queue_pending"}


async def test_ws_without_upgrade_is_400_text(http: httpx.AsyncClient) -> None:
    response = await http.get("/ws")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("No WebSocket UPGRADE hdr")


async def test_system_stats_shape(http: httpx.AsyncClient, target: Target) -> None:
    body = (await http.get("/system_stats")).json()
    assert set(body) == {"system", "devices"}
    system = body["system"]
    for key in ("os", "ram_total", "ram_free", "comfyui_version", "python_version", "pytorch_version",
                "embedded_python", "argv"):  # fmt: skip
        assert key in system, key
    assert isinstance(system["argv"], list) and system["argv"][0] == "main.py"
    if target.at_least(versions.MODERN):
        assert system["os"] == "linux"
        assert isinstance(system["comfy_package_versions"], list) and system["comfy_package_versions"]
        assert {"name", "installed", "required"} <= set(system["comfy_package_versions"][0])
        assert isinstance(system["deploy_environment"], str)
    else:
        assert system["os"] == "posix"
    assert isinstance(system["ram_total"], int) and system["ram_total"] > 0
    device = body["devices"][0]
    assert {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total", "torch_vram_free"} <= set(device)


def server_features(target: Target) -> dict[str, Any]:
    """What /features and the feature_flags answer hold on a target started with default flags."""
    if target.at_least(versions.MODERN):
        return {
            "supports_preview_metadata": True,
            "supports_model_type_tags": True,
            "max_upload_size": 104857600,
            "extension": {"manager": {"supports_v4": True}},
            "node_replacements": True,
            "assets": False,
        }
    return {"supports_preview_metadata": True, "max_upload_size": 104857600}


async def test_small_get_endpoints(http: httpx.AsyncClient, target: Target) -> None:
    exec_info = (await http.get("/prompt")).json()
    assert set(exec_info) == {"exec_info"} and isinstance(exec_info["exec_info"]["queue_remaining"], int)
    features = (await http.get("/features")).json()
    assert features == server_features(target)
    assert isinstance((await http.get("/embeddings")).json(), list)
    models = (await http.get("/models")).json()
    assert {"checkpoints", "loras", "vae"} <= set(models)
    assert isinstance((await http.get("/models/checkpoints")).json(), list)
    assert (await http.get("/history/does-not-exist")).json() == {}
    assert (await http.get("/object_info/DoesNotExist")).json() == {}


async def test_internal_files_lists_names_and_rejects_other_types(http: httpx.AsyncClient) -> None:
    listing = await http.get("/internal/files/input")
    assert listing.status_code == 200 and isinstance(listing.json(), list)
    bogus = await http.get("/internal/files/bogus")
    assert bogus.status_code == 400
    assert bogus.json() == {"error": "Invalid directory type"}


@pytest.mark.simulator_only
def test_simulator_ignores_flags_it_does_not_know(start_extra_target: StartTarget) -> None:
    started = start_extra_target(["--highvram", "--some-future-comfyui-flag", "--preview-size", "256"])
    argv = httpx.get(started.base_url + "/system_stats", timeout=10.0).json()["system"]["argv"]
    assert "--some-future-comfyui-flag" in argv, "system_stats echoes the command line as ComfyUI does"
