#!/usr/bin/env bash
# Smoke-test a built comfyui-api image with whatever container engine is here (docker, else podman; ENGINE=...
# to choose): `comfyui-api --version` and `--help` in the image, then the image's own CMD started with port 3000
# published on loopback, `/ready` awaited, the HTTP checks of tests/smoke.py (/health, /docs, /docs/redoc and their
# assets, one POST /prompt that must produce a PNG), and a stop that must end the server with exit code 0.
#
#   docker/smoke-test.sh IMAGE [EXTRA RUN ARGUMENTS...]
#   docker/smoke-test.sh my-comfyui-api --gpus all
#   docker/smoke-test.sh my-comfyui-api -e CMD="python main.py --cpu --listen 127.0.0.1 --port 8188"   # no GPU
#
# Run from the repository's root, after README's test command (it uses .venv's Python for tests/smoke.py).
# PORT (default 38000) is the host port; READY_TIMEOUT_S (default 900) bounds ComfyUI's start in the image.
set -euo pipefail

image=${1:?usage: docker/smoke-test.sh IMAGE [EXTRA RUN ARGUMENTS...]}
shift
engine=${ENGINE:-$(command -v docker || command -v podman || true)}
[[ -n "$engine" ]] || { echo "no container engine found (docker or podman; or set ENGINE)" >&2; exit 2; }
port=${PORT:-38000}
ready_timeout_s=${READY_TIMEOUT_S:-900}
python=${PYTHON:-.venv/bin/python}
name="comfyui-api-smoke-$$"

step() { printf '== %s\n' "$*"; }

step "version and help inside $image"
"$engine" run --rm "$image" comfyui-api --version
"$engine" run --rm "$image" comfyui-api --help >/dev/null

step "start $image (its own CMD), port 3000 published on 127.0.0.1:$port"
"$engine" run -d --name "$name" -p "127.0.0.1:$port:3000" "$@" "$image" >/dev/null
cleanup() { "$engine" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

started=$SECONDS
until "$python" -c "import sys, httpx; sys.exit(httpx.get('http://127.0.0.1:$port/ready', timeout=5).status_code != 200)" \
    2>/dev/null; do
    if [[ "$("$engine" inspect -f '{{.State.Running}}' "$name")" != "true" ]]; then
        "$engine" logs "$name" | tail -n 50 >&2
        echo "the container exited before /ready answered 200" >&2
        exit 1
    fi
    if (( SECONDS - started > ready_timeout_s )); then
        "$engine" logs "$name" | tail -n 50 >&2
        echo "/ready did not answer 200 within ${ready_timeout_s}s" >&2
        exit 1
    fi
    sleep 2
done
step "ready after $(( SECONDS - started ))s"

step "HTTP checks (tests/smoke.py --url)"
"$python" -m tests.smoke --url "http://127.0.0.1:$port"

step "stop (SIGTERM; the server must exit 0)"
"$engine" stop --time 120 "$name" >/dev/null
code=$("$engine" wait "$name")
if [[ "$code" != "0" ]]; then
    "$engine" logs "$name" | tail -n 50 >&2
    echo "the server exited with $code after SIGTERM" >&2
    exit 1
fi
step "ok: $image"
