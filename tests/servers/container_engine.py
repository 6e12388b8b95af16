"""A stand-in for a container engine's command line, for testing docker/smoke-test.sh where no engine runs: the
"image" is this checkout's install of comfyui-api, and a "container" is a process of it. Only what the script uses:

    run [--rm] [-d] [--name N] [-p 127.0.0.1:HOST:3000] [-e K=V]... IMAGE [comfyui-api ARGS...]
    inspect -f '{{.State.Running}}' N     logs N     stop [--time S] N     wait N     rm [-f] N

`run` without a command starts the image's CMD (`comfyui-api`, serving on the published port, with the bundled
simulator). Containers live in STAND_IN_ENGINE_DIR (one folder each: pid, exit code, log)."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

STATE = Path(os.environ.get("STAND_IN_ENGINE_DIR", "/nonexistent"))
STOP_TIMEOUT_S = 120.0


def _home(name: str) -> Path:
    return STATE / name


def _argv(command: list[str]) -> list[str]:
    if command and command[0] == "comfyui-api":
        command = command[1:]
    return [sys.executable, "-m", "comfyui_api", *command]


def run(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run")
    parser.add_argument("--rm", action="store_true")
    parser.add_argument("-d", action="store_true")
    parser.add_argument("--name", default=f"c{os.getpid()}")
    parser.add_argument("-p", dest="publish")
    parser.add_argument("-e", dest="env", action="append", default=[])
    parser.add_argument("image")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args(args)
    home = _home(options.name)
    home.mkdir(parents=True)
    env = {**os.environ, "COMFYUI_API_HOME": str(home / "data"), "HOST": "127.0.0.1", "LOG_LEVEL": "WARNING"}
    if options.publish:
        env["PORT"] = options.publish.rsplit(":", 2)[1]
    env.update(item.split("=", 1) for item in options.env)
    argv = _argv(options.command)
    if not options.d:
        with (home / "log").open("wb") as log:
            code = subprocess.run(argv, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT, check=False)
        sys.stdout.write((home / "log").read_text())
        return code.returncode
    if os.fork() == 0:  # the engine's own process: it starts the container, reaps it and keeps its exit code
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for stream in (0, 1, 2):
            os.dup2(devnull, stream)
        with (home / "log").open("wb") as log:
            process = subprocess.Popen(argv, env=env, cwd=home, stdout=log, stderr=subprocess.STDOUT)
            (home / "pid").write_text(str(process.pid))
            (home / "exit").with_suffix(".tmp").write_text(str(process.wait()))
            (home / "exit").with_suffix(".tmp").rename(home / "exit")
        os._exit(0)
    deadline = time.monotonic() + 30
    while not (home / "pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def _running(name: str) -> bool:
    return not (_home(name) / "exit").exists()


def main(argv: list[str]) -> int:
    verb, rest = argv[0], argv[1:]
    name = rest[-1] if rest else ""
    if verb == "run":
        return run(rest)
    if verb == "inspect":
        print("true" if _running(name) else "false")
    elif verb == "logs":
        sys.stdout.write((_home(name) / "log").read_text(errors="replace"))
    elif verb == "stop":
        if _running(name):
            os.kill(int((_home(name) / "pid").read_text()), signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while _running(name) and time.monotonic() < deadline:
                time.sleep(0.1)
    elif verb == "wait":
        while _running(name):
            time.sleep(0.1)
        print((_home(name) / "exit").read_text())
    elif verb == "rm":
        if _home(name).exists() and _running(name):
            os.kill(int((_home(name) / "pid").read_text()), signal.SIGKILL)
    else:
        print(f"the stand-in engine knows no {verb!r}", file=sys.stderr)
        return 125
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
