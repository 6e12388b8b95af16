"""/docs and /docs/redoc work with no request leaving the machine: headless Chromium (Debian's package), in a
network namespace with only loopback (`unshare -rn`), renders the Swagger UI and the ReDoc page the server serves
itself, and each lists the endpoints; the screenshots are kept beside the test's files for a person to look at."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image

from tests.integration import loopback_only
from tests.integration.docs_browser import browser

pytestmark = [pytest.mark.simulator_only, pytest.mark.slow]


@pytest.mark.skipif(browser() is None, reason="needs Chromium (Debian: apt-get install chromium; .ci/run does)")
@pytest.mark.skipif(not loopback_only.available(), reason="needs `unshare -rn` (user and network namespaces)")
def test_swagger_ui_and_redoc_render_every_endpoint_from_loopback_alone(tmp_path: Path) -> None:
    run = loopback_only.run_module("tests.integration.docs_browser", str(tmp_path), cwd=tmp_path, timeout_s=400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    swagger = (tmp_path / "docs.html").read_text()
    assert 'class="swagger-ui"' in swagger, "Swagger UI did not start (its scripts are served by the server itself)"
    assert "Failed to load API definition" not in swagger
    redoc = (tmp_path / "redoc.html").read_text()
    assert re.search(r'class="[^"]*\bredoc-wrap"', redoc), (
        "ReDoc did not start (its bundle is served by the server itself)"
    )
    # ReDoc writes each operation's method and path as two spans in the operation's header
    redoc_paths = set(re.findall(r'http-verb (?:get|post|delete)">\w+</span><span[^>]*>([^<]+)</span>', redoc))
    for path in ("/prompt", "/jobs/{job_id}/events", "/health", "/ready", "/download"):
        assert f'data-path="{path}"' in swagger, f"{path} is not listed by Swagger UI"
        assert path in redoc_paths, f"{path} is not listed by ReDoc"
    for page in ("docs", "redoc"):
        with Image.open(tmp_path / f"{page}.png") as shot:
            colours = shot.convert("RGB").resize((64, 128)).getcolors(64 * 128) or []
        assert shot.size == (1280, 2400) and len(colours) > 20, f"the {page} screenshot is a blank page"
