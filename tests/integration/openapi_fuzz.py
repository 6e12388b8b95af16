"""Run Schemathesis against a live server's /docs/openapi.json: `python -m tests.integration.openapi_fuzz SECONDS`.
Starts a server (simulator as ComfyUI, outbound guard on) and exits with Schemathesis's exit code. Meant to run in a
network namespace with only loopback (see test_openapi_fuzz.py): generated URLs must not reach the internet."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from tests.integration.server import start_server

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


def main(budget_s: int) -> int:
    with tempfile.TemporaryDirectory(prefix="openapi-fuzz-") as root:
        server = start_server(Path(root), env={"ALLOW_PRIVATE_URLS": "false", "LOG_LEVEL": "WARNING"})
        try:
            command = [
                str(Path(sys.executable).with_name("schemathesis")), "run", server.url("/docs/openapi.json"),
                "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", "15",
                "--max-time", str(budget_s), "--workers", "1", "--request-timeout", "20", "--no-color",
            ]  # fmt: skip
            return subprocess.run(command, check=False, timeout=budget_s * 3).returncode
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 60))
