"""Fixtures of the contract suite: the target (simulator, a ComfyUI checkout, or a running URL) and its clients.

COMFYUI_TEST_URL attaches to a running ComfyUI; COMFYUI_TEST_DIR starts that checkout with COMFYUI_TEST_PYTHON;
otherwise the simulator is started. Tests marked real_only / simulator_only are skipped on the other kind.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import httpx
import pytest

from tests.contract.harness import HTTP_TIMEOUT_S, Target, TargetSpec, attach_target, start_target

# Simulated seconds per KSampler step: slow enough to interrupt a run, fast enough for a short suite.
SIMULATOR_STEP_S = 0.25

StartTarget = Callable[..., Target]


# The simulator runs the suite once per ComfyUI version profile; a real target once, as whatever version it is.
SIMULATOR_PROFILES = ("0.33.0", "0.3.64")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "simulator_profile" in metafunc.fixturenames:
        spec = TargetSpec.from_env(os.environ)
        profiles: list[str | None] = [None] if spec.is_real or spec.url else list(SIMULATOR_PROFILES)
        ids = [f"comfyui-{p}" if p else "target" for p in profiles]
        metafunc.parametrize("simulator_profile", profiles, ids=ids, scope="session")


@pytest.fixture(scope="session")
def target_spec(simulator_profile: str | None) -> TargetSpec:
    return dataclasses.replace(TargetSpec.from_env(os.environ), simulator_version=simulator_profile)


@pytest.fixture(scope="session")
def target(target_spec: TargetSpec) -> Iterator[Target]:
    if target_spec.url is not None:
        yield attach_target(target_spec.url, target_spec.is_real)
        return
    started = start_target(target_spec, step_seconds=None if target_spec.is_real else SIMULATOR_STEP_S)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def start_extra_target(target_spec: TargetSpec) -> Iterator[StartTarget]:
    """Start another target with extra ComfyUI flags (e.g. --preview-method latent2rgb); stopped after the test."""
    if not target_spec.can_start:
        pytest.skip("COMFYUI_TEST_URL alone cannot start a server with other flags; set COMFYUI_TEST_DIR too")
    started: list[Target] = []

    def start(extra_args: Sequence[str] = ()) -> Target:
        spec = target_spec
        if spec.url is not None:  # URL plus DIR: extra targets come from the checkout
            spec = TargetSpec(None, spec.comfyui_dir, spec.python, False, spec.simulator_version)
        extra = start_target(spec, extra_args, step_seconds=None if spec.is_real else SIMULATOR_STEP_S)
        started.append(extra)
        return extra

    try:
        yield start
    finally:
        for extra in started:
            extra.stop()


@pytest.fixture
async def http(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=target.base_url, timeout=HTTP_TIMEOUT_S) as client:
        yield client


@pytest.fixture(autouse=True)
def _only_on_matching_target(request: pytest.FixtureRequest, target_spec: TargetSpec) -> None:
    if request.node.get_closest_marker("real_only") and not target_spec.is_real:
        pytest.skip("real_only: checks behaviour only a real ComfyUI has")
    if request.node.get_closest_marker("simulator_only") and target_spec.is_real:
        pytest.skip("simulator_only: checks the simulator's own behaviour")
