"""System-level installs a manifest asks for: apt packages (only those dpkg does not list as installed) and pip
requirements (pip itself skips what is already satisfied, without fetching anything).

Runs commands from `commands.py`; decides nothing about custom nodes or models.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from comfyui_api.models.commands import (
    apt_env,
    apt_install_command,
    apt_update_command,
    dpkg_status_command,
    pip_install_command,
    run_command,
)

log = logging.getLogger(__name__)


def apt_base_name(package: str) -> str:
    """`ffmpeg=7:5.1` / `libc6:amd64` -> the bare package name dpkg reports."""
    return package.split("=", 1)[0].split(":", 1)[0]


def parse_dpkg_status(output: str) -> set[str]:
    """Names dpkg-query reports as installed, from lines `<name> <status>`."""
    installed = set()
    for line in output.splitlines():
        name, _, status = line.strip().partition(" ")
        if name and status.strip() == "installed":
            installed.add(name)
    return installed


async def missing_apt_packages(packages: Sequence[str], *, timeout_s: float) -> list[str]:
    """The entries whose package dpkg does not list as installed (unknown names count as missing)."""
    if not packages:
        return []
    result = await run_command(dpkg_status_command(packages), timeout_s=timeout_s, check=False)
    installed = parse_dpkg_status(result.stdout)
    return [p for p in packages if apt_base_name(p) not in installed]


async def install_apt_packages(packages: Sequence[str], *, timeout_s: float) -> list[str]:
    """Install what is missing (apt-get update first, as images usually ship without package lists). Returns the
    entries that were installed; [] when all were present."""
    missing = await missing_apt_packages(packages, timeout_s=timeout_s)
    if not missing:
        return []
    log.info("installing apt packages: %s", ", ".join(missing))
    await run_command(apt_update_command(), timeout_s=timeout_s, env=apt_env())
    await run_command(apt_install_command(missing), timeout_s=timeout_s, env=apt_env())
    return missing


async def install_pip_requirements(
    pip_cmd: Sequence[str], requirements: Sequence[str], *, extra_args: Sequence[str] = (), timeout_s: float
) -> None:
    if not requirements:
        return
    argv = pip_install_command(pip_cmd, requirements=requirements, extra_args=extra_args)
    result = await run_command(argv, timeout_s=timeout_s)
    log.debug("pip output: %s", result.stdout[-2000:])
