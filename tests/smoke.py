"""A smoke test of an installed comfyui-api, whatever form it was installed in (the single binary, a wheel in a clean
venv, a container image): `--version`, `--help` (of each subcommand too), `serve` with the bundled simulator from an
empty working directory, `/docs`, `/docs/redoc` and their assets, one `POST /prompt` producing a PNG, and SIGTERM
ending it with exit code 0.

    python -m tests.smoke dist/comfyui-api                   # any command line that runs comfyui-api
    python -m tests.smoke --expect-traces dist/comfyui-api   # ... and the job's trace reaches an OTLP receiver
    python -m tests.smoke --url http://127.0.0.1:3000        # the HTTP part only, against a server already started

With `--url` the server may front a real ComfyUI (the graph needs no model). `--expect-traces` (for an install
with the `otel` extra) points OTEL_EXPORTER_OTLP_ENDPOINT at a loopback receiver and requires a trace export by the
time the server has stopped. Prints what it checked and how long the server took from process start to `/ready`;
exits non-zero on the first check that fails.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.servers.processes import free_port

READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRAPH = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 255}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "smoke"}},
}


SUBCOMMANDS = ("serve", "worker", "runpod", "simulator", "run", "jobs", "workflow", "completion")
# The runpod SDK probes the network and asks RunPod for jobs unless told otherwise: nothing may leave the machine.
NO_RUNPOD_NETWORK = {
    "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
    "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/job-take/$ID",
    "RUNPOD_WEBHOOK_POST_OUTPUT": "http://127.0.0.1:9/job-done/$ID",
}


class SmokeFailed(Exception):
    pass


@dataclass
class SmokeReport:
    version: str
    ready_s: float
    png_bytes: int
    exit_code: int


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise SmokeFailed(what)


def check_http(url: str, *, version: str | None = None, simulator: bool = True) -> int:
    """The HTTP part: /health answers (saying the simulator stands in, when `simulator`; and the version), the docs
    pages and their assets are served, one job produces a PNG. Returns its size in bytes."""
    with httpx.Client(base_url=url, timeout=120) as http:
        health = http.get("/health").json()
        if simulator:
            _check(health.get("comfyui") == "simulator", f"/health does not say the simulator stands in: {health}")
        else:
            _check(health.get("status") == "healthy", f"/health: {health}")
        ready = http.get("/ready").json()
        if version is not None:
            for route, body in (("/health", health), ("/ready", ready)):
                said = body.get("version")
                _check(said == version, f"{route} gives version {said!r}, not {version!r}")
        docs = ("/docs", "/docs/assets/swagger-ui-bundle.js", "/docs/redoc", "/docs/redoc-assets/redoc.standalone.js")
        for asset in (*docs, "/docs/openapi.json"):  # served by itself
            _check(http.get(asset).status_code == 200, f"GET {asset} is not 200: /docs would not work")
        answer = http.post("/prompt", json={"prompt": GRAPH})
        _check(answer.status_code == 200, f"POST /prompt answered {answer.status_code}: {answer.text[:300]}")
        png = base64.b64decode(answer.json()["images"][0])
        _check(png.startswith(PNG_MAGIC), "POST /prompt did not give back a PNG")
        return len(png)


def _wait_ready(url: str, process: subprocess.Popen[bytes], started: float) -> float:
    deadline = started + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        _check(process.poll() is None, f"the server exited with {process.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                return time.monotonic() - started
        time.sleep(0.1)
    raise SmokeFailed(f"/ready did not answer 200 within {READY_TIMEOUT_S:.0f} s")


class _TraceExports(BaseHTTPRequestHandler):
    received: list[int]  # body sizes of the POSTs to /v1/traces

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/v1/traces" and self.headers.get("content-type") == "application/x-protobuf":
            self.received.append(len(body))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[str, list[int]]]:
    """A loopback OTLP/HTTP endpoint that answers 200 and notes each trace export: (its base URL, body sizes)."""
    received: list[int] = []
    handler = type("Handler", (_TraceExports,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def smoke(command: Sequence[str], *, env: dict[str, str] | None = None, expect_traces: bool = False) -> SmokeReport:
    """Runs every check against `command` (the argv prefix that runs comfyui-api)."""
    if expect_traces:
        with otlp_receiver() as (endpoint, exports):
            report = smoke(command, env={**(env or {}), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
        _check(bool(exports) and all(exports), f"no trace export reached the OTLP receiver ({exports})")
        return report
    program = Path(command[0])
    if program.exists():  # a path: it must still work from the server's own working directory
        command = [str(program.resolve()), *command[1:]]
    base_env = {**os.environ, **NO_RUNPOD_NETWORK, **(env or {})}
    for name in ("CMD", "COMFY_HOME", "COMFYUI_URL", "API_KEYS", "API_KEYS_FILE"):
        base_env.pop(name, None)  # the bundled simulator, no key
    shown = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=120, env=base_env)
    _check(shown.returncode == 0, f"--version exited with {shown.returncode}: {shown.stderr[-500:]}")
    version = shown.stdout.strip().removeprefix("comfyui-api ").strip()
    _check(bool(version) and version != "0.0.0", f"--version printed {shown.stdout!r}")
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120, env=base_env)
    _check(helped.returncode == 0 and "serve" in helped.stdout, f"--help: {helped.returncode} {helped.stdout[:200]}")
    for subcommand in SUBCOMMANDS:  # each one's imports load (a frozen build misses what it was not told about)
        shown = subprocess.run(
            [*command, subcommand, "--help"], capture_output=True, text=True, timeout=120, env=base_env
        )
        _check(shown.returncode == 0, f"{subcommand} --help: exit {shown.returncode}: {shown.stderr[-1000:]}")
    with tempfile.TemporaryDirectory(prefix="comfyui-api-smoke-") as tmp:
        work, home = Path(tmp) / "cwd", Path(tmp) / "home"
        work.mkdir()
        port = free_port()
        run_env = {**base_env, "COMFYUI_API_HOME": str(home), "LOG_LEVEL": "warning"}
        log_path = Path(tmp) / "server.log"
        with log_path.open("wb") as log:
            started = time.monotonic()
            process = subprocess.Popen(
                [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=work,
                env=run_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                ready_s = _wait_ready(url, process, started)
                png_bytes = check_http(url, version=version)
                process.send_signal(signal.SIGTERM)
                exit_code = process.wait(timeout=STOP_TIMEOUT_S)
            except (SmokeFailed, subprocess.TimeoutExpired, httpx.HTTPError) as exc:
                raise SmokeFailed(f"{exc}\n--- server log ---\n{log_path.read_text(errors='replace')[-3000:]}") from exc
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        _check(exit_code == 0, f"SIGTERM: exit code {exit_code}\n{log_path.read_text(errors='replace')[-3000:]}")
        _check(not any(work.iterdir()), f"the server wrote into its working directory: {sorted(work.iterdir())}")
    return SmokeReport(version, ready_s, png_bytes, exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="check a server that is already running (the HTTP part only)")
    parser.add_argument("--expect-traces", action="store_true", help="the install has the otel extra: check a trace")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command line that runs comfyui-api")
    args = parser.parse_args(argv)
    try:
        if args.url:
            print(f"ok: {args.url} made a {check_http(args.url.rstrip('/'), simulator=False)}-byte PNG")
            return 0
        if not args.command:
            parser.error("give the command that runs comfyui-api, or --url")
        report = smoke(args.command, expect_traces=args.expect_traces)
    except SmokeFailed as exc:
        print(f"smoke test FAILED: {exc}", file=sys.stderr)
        return 1
    print(
        f"ok: comfyui-api {report.version}: --version, --help, ready {report.ready_s:.1f} s after start, "
        f"POST /prompt made a {report.png_bytes}-byte PNG, SIGTERM exit {report.exit_code}"
        + (", its trace exported over OTLP" if args.expect_traces else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
