"""Fixtures of the api/ tests: the app around a scripted runner (see app_support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar.testing import AsyncTestClient

from comfyui_api.api.services import STATE_KEY, Services
from comfyui_api.app import build_http_app
from comfyui_api.jobs.service import JobService
from comfyui_api.jobs.store import MemoryJobStore
from comfyui_api.settings import JobSettings, ServerSettings, Settings
from tests.unit.api.app_support import FakeInstance, FakeRunner


@pytest.fixture
def runner() -> FakeRunner:
    return FakeRunner()


@pytest.fixture
async def client(runner: FakeRunner) -> AsyncIterator[AsyncTestClient]:
    settings = Settings(
        server=ServerSettings(max_body_bytes=2048, max_queue_depth=3),
        jobs=JobSettings(default_timeout_s=60, max_timeout_s=120),
    )
    jobs = JobService(runner, MemoryJobStore())  # type: ignore[arg-type]
    services = Services(settings, FakeInstance(), runner.registry, runner, jobs)  # type: ignore[arg-type]
    app = build_http_app(settings, state={STATE_KEY: services})
    async with AsyncTestClient(app) as test_client:
        yield test_client
