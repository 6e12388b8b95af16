"""Fixtures for integration tests: a shared real server per module (simulator as ComfyUI, or the real ComfyUI named
by COMFYUI_TEST_DIR) and a local HTTP server serving media files for download tests. Tests marked simulator_only /
real_only are skipped on the other kind of ComfyUI. Helpers live in `tests/integration/server.py`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.server import TARGET, ServerProcess, png_bytes, running_server

HERE = Path(__file__).resolve().parent
MEDIA_FILES = {
    "/green.png": (png_bytes((10, 200, 30)), "image/png"),
    "/notes.txt": (b"plain text, not a picture", "text/plain"),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip at collection, so a skipped test starts no (module-scoped) server. Pytest hands this hook every item of
    the session: only this folder's are looked at."""
    for item in items:
        if not item.path.is_relative_to(HERE):
            continue
        simulator_only = item.get_closest_marker("simulator_only")
        if simulator_only is not None and TARGET.is_real:
            reason = simulator_only.kwargs.get("reason", "checks the simulator only")
            item.add_marker(pytest.mark.skip(reason=f"simulator_only: {reason}"))
        if item.get_closest_marker("real_only") is not None and not TARGET.is_real:
            item.add_marker(pytest.mark.skip(reason="real_only: needs a real ComfyUI (COMFYUI_TEST_DIR)"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole module: MAX_BODY_SIZE_MB=1, fast simulated sampler steps."""
    yield from running_server(tmp_path_factory.mktemp("server"), env={"MAX_BODY_SIZE_MB": "1"})


class _MediaHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = MEDIA_FILES.get(self.path)
        if found is None:
            self.send_error(404)
            return
        body, content_type = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def media_url() -> Iterator[str]:
    """Base URL of a loopback HTTP server serving MEDIA_FILES (anything else is 404)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _MediaHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)
