"""/docs works with no request leaving the machine: headless Chromium (Debian's package), in a network namespace
with only loopback (`unshare -rn`), renders the Swagger UI the server serves itself and lists the endpoints; the
screenshot is kept beside the test's files for a person to look at."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.integration import loopback_only
from tests.integration.docs_browser import browser

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]


@pytest.mark.skipif(browser() is None, reason="needs Chromium (Debian: apt-get install chromium; .ci/run does)")
@pytest.mark.skipif(not loopback_only.available(), reason="needs `unshare -rn` (user and network namespaces)")
def test_the_swagger_ui_renders_every_endpoint_from_loopback_alone(tmp_path: Path) -> None:
    run = loopback_only.run_module("tests.integration.docs_browser", str(tmp_path), cwd=tmp_path, timeout_s=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    dom = (tmp_path / "dom.html").read_text()
    assert 'class="swagger-ui"' in dom, "Swagger UI did not start (its scripts are served by the server itself)"
    for path in ("/prompt", "/jobs/{job_id}/events", "/health", "/ready", "/download"):
        assert f'data-path="{path}"' in dom, f"{path} is not listed on the rendered page"
    assert "Failed to load API definition" not in dom
    with Image.open(tmp_path / "docs.png") as shot:
        colours = shot.convert("RGB").resize((64, 128)).getcolors(64 * 128) or []
    assert shot.size == (1280, 2400) and len(colours) > 20, "the screenshot is a blank page"
