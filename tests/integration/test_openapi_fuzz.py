"""Schemathesis against the OpenAPI document of a live server: no 5xx, no status code, content type or body that
contradicts the schema, for every operation. Runs in a network namespace with only loopback (`unshare -rn`), so the
URLs it generates (webhooks, media, /download) cannot leave the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration import loopback_only

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]

BUDGET_S = 60


@pytest.mark.timeout(BUDGET_S * 5)
@pytest.mark.skipif(not loopback_only.available(), reason="needs `unshare -rn` (user and network namespaces)")
def test_no_operation_answers_a_5xx_or_contradicts_the_schema(tmp_path: Path) -> None:
    # Schemathesis keeps a cache in its working directory: tmp_path, never the checkout
    run = loopback_only.run_module(
        "tests.integration.openapi_fuzz", str(BUDGET_S), cwd=tmp_path, timeout_s=BUDGET_S * 4
    )
    report = run.stdout[-20000:] + run.stderr[-4000:]
    assert run.returncode == 0, report
    assert "Tested: " in run.stdout and "Tested: 0\n" not in run.stdout, report
