"""The whole suite leaves the checkout as it found it: a test (or a server, simulator or tool one starts) that writes
into the working directory fails the run, naming what appeared."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What installing and running the tools is expected to leave beside the sources.
_EXPECTED = {".venv", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist", "comfyui_api.egg-info"}
_BEFORE = pytest.StashKey[set[str]]()


def _entries() -> set[str]:
    return {path.name for path in REPO_ROOT.iterdir()} - _EXPECTED


def pytest_sessionstart(session: pytest.Session) -> None:
    session.stash[_BEFORE] = _entries()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.stash.get(_BEFORE, None)
    if before is None:
        return
    if strays := sorted(_entries() - before):
        print(f"\nthe tests left {', '.join(strays)} in {REPO_ROOT}: write into a temporary folder instead")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
