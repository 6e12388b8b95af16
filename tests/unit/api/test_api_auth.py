"""api/auth.py: with API keys set, every route but the probes and the documentation answers 401 without a valid key
(Bearer or X-API-Key, compared in constant time); the OpenAPI document declares both schemes; the key file is read
again on reload; without keys nothing changes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from comfyui_api.api.auth import ApiKeys, presented_key
from comfyui_api.api.services import STATE_KEY, Services
from comfyui_api.app import build_http_app
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.store import MemoryJobStore
from comfyui_api.settings import ServerSettings, Settings
from tests.unit.api.app_support import GRAPH, FakeInstance, FakeRunner


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[AsyncTestClient]:
    key_file = tmp_path / "keys"
    key_file.write_text("from-file\n\n")
    settings = Settings(server=ServerSettings(api_keys=("k-one", "k-two"), api_keys_file=key_file))
    runner = FakeRunner()
    services = Services(settings, FakeInstance(), runner.registry, runner, JobService(runner, MemoryJobStore()))  # type: ignore[arg-type]
    app = build_http_app(settings, state={STATE_KEY: services})
    async with AsyncTestClient(app) as client:
        yield client


async def test_routes_need_a_valid_key(guarded: AsyncTestClient) -> None:
    body = json.dumps({"prompt": GRAPH}).encode()
    headers = {"content-type": "application/json"}
    refused = await guarded.post("/prompt", content=body, headers=headers)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["error"]["type"] == "unauthorized"
    wrong = await guarded.get("/jobs", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "nope" not in wrong.text
    for extra in ({"authorization": "Bearer k-one"}, {"x-api-key": "k-two"}, {"authorization": "bearer from-file"}):
        response = await guarded.post("/prompt", content=body, headers={**headers, **extra})
        assert response.status_code == 200, extra


async def test_probes_and_docs_stay_open_and_the_schemes_are_declared(guarded: AsyncTestClient) -> None:
    assert (await guarded.get("/health")).status_code == 200
    assert (await guarded.get("/ready")).status_code == 200
    spec = (await guarded.get("/docs/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["BearerKey"]["scheme"] == "bearer" and schemes["HeaderKey"]["name"] == "X-API-Key"
    assert {"BearerKey": []} in spec["security"]
    for page in ("/docs", "/docs/redoc", "/docs/redoc-assets/redoc.standalone.js"):
        assert (await guarded.get(page)).status_code == 200, page
    moved = await guarded.get("/redoc", follow_redirects=False)  # where FastAPI-style gateways keep ReDoc
    assert moved.status_code == 307 and moved.headers["location"] == "/docs/redoc"


def test_the_key_file_is_read_again_on_reload(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("old\n")
    keys = ApiKeys(ServerSettings(api_keys_file=key_file))
    assert keys.accepts("old") and not keys.accepts("new")
    key_file.write_text("new\n")
    keys.reload()
    assert keys.accepts("new") and not keys.accepts("old")
    key_file.unlink()
    keys.reload()  # unreadable: the keys stay
    assert keys.accepts("new")
    assert not keys.accepts("") and not keys.accepts(None)


def test_without_keys_everything_is_open() -> None:
    keys = ApiKeys(ServerSettings())
    assert not keys.enabled
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"x-api-key": "xyz"}) == "xyz"
    assert presented_key({"authorization": "Basic abc"}) is None
