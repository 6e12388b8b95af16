"""Load a live server's /docs and /docs/redoc in headless Chromium: `python -m tests.integration.docs_browser
OUT_DIR`. Starts a server (simulator as ComfyUI), has Chromium render each page with its scripts run, and writes
what the browser ended with into OUT_DIR: `<page>.html` (the rendered DOM) and `<page>.png` (a screenshot), for
the pages `docs` (Swagger UI) and `redoc`. Meant to run in a network namespace with only loopback (see
test_docs_browser.py), so a page that needed a CDN would come up empty."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.server import start_server

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
PAGES = {"docs": "/docs", "redoc": "/docs/redoc"}


def browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def main(out: Path) -> int:
    chromium = browser()
    if chromium is None:
        print("no Chromium found", file=sys.stderr)
        return 3
    with tempfile.TemporaryDirectory(prefix="docs-browser-") as root:
        server = start_server(Path(root) / "server", env={"LOG_LEVEL": "WARNING"})
        try:
            flags = [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
                f"--user-data-dir={Path(root) / 'profile'}", "--window-size=1280,2400",
                "--virtual-time-budget=15000",  # let the page's scripts fetch the OpenAPI document and render it
            ]  # fmt: skip
            for name, path in PAGES.items():
                page = server.url(path)
                dom = subprocess.run(
                    [chromium, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=False
                )
                (out / f"{name}.html").write_text(dom.stdout)
                shot = subprocess.run(
                    [chromium, *flags, f"--screenshot={out / f'{name}.png'}", page],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                if dom.returncode or shot.returncode:
                    print(name, dom.stderr[-3000:], shot.stderr[-3000:], file=sys.stderr)
                    return 1
            return 0
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
