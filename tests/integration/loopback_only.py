"""Running one of this package's modules in a network namespace of its own with only loopback up (`unshare -rn`):
whatever it starts (a server, a fuzzer, a browser) can reach nothing beyond this machine."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from tests.integration.server import REPO_ROOT


def available() -> bool:
    """Whether user and network namespaces can be made here."""
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False)
    return probe.returncode == 0


def run_module(module: str, *args: str, cwd: Path, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` inside the namespace, in `cwd` (the checkout is found through PYTHONPATH, so
    whatever the module writes into its working directory stays out of it)."""
    command = shlex.join([sys.executable, "-m", module, *args])
    return subprocess.run(
        ["unshare", "-rn", "sh", "-c", f"ip link set lo up && exec {command}"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
