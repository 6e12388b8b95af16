"""Schemathesis against the OpenAPI document of a live server: no 5xx, no status code, content type or body that
contradicts the schema, for every operation. Runs in a network namespace with only loopback (`unshare -rn`), so the
URLs it generates (webhooks, media, /download) cannot leave the machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.server import REPO_ROOT

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]

BUDGET_S = 60


def isolated_network_available() -> bool:
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.timeout(BUDGET_S * 5)
@pytest.mark.skipif(not isolated_network_available(), reason="needs `unshare -rn` (user and network namespaces)")
def test_no_operation_answers_a_5xx_or_contradicts_the_schema(tmp_path: Path) -> None:
    script = f"ip link set lo up && exec {sys.executable} -m tests.integration.openapi_fuzz {BUDGET_S}"
    run = subprocess.run(
        ["unshare", "-rn", "sh", "-c", script],
        cwd=tmp_path,  # Schemathesis keeps a cache in its working directory: never the checkout's
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=BUDGET_S * 4,
        check=False,
    )
    report = run.stdout[-20000:] + run.stderr[-4000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout and "Tested: 0\n" not in run.stdout, report
