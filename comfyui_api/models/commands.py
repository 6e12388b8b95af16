"""The external commands a manifest needs (apt-get, dpkg-query, pip, git, comfy-cli): pure argv builders, and one
runner that executes an argv as an asyncio subprocess with a timeout.

The builders decide nothing and touch nothing; `run_command` never goes through a shell and always bounds its wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_OUTPUT_TAIL_CHARS = 4000  # enough of pip's or git's last lines to explain a failure without flooding the log


class CommandFailed(RuntimeError):
    """A command exited non-zero, timed out or could not start. The message carries the command and output tail."""

    def __init__(self, message: str, *, argv: Sequence[str], returncode: int | None, output: str = ""):
        super().__init__(message)
        self.argv = tuple(argv)
        self.returncode = returncode
        self.output = output


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float


# ---- builders ----


def apt_update_command() -> list[str]:
    return ["apt-get", "update"]


def apt_install_command(packages: Sequence[str]) -> list[str]:
    return ["apt-get", "install", "-y", "--no-install-recommends", *packages]


def dpkg_status_command(packages: Sequence[str]) -> list[str]:
    """Prints `<name> <status>` per known package; unknown names go to stderr (exit 1)."""
    return ["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\\n", *(_apt_name(p) for p in packages)]


def apt_env() -> dict[str, str]:
    return {"DEBIAN_FRONTEND": "noninteractive"}


def pip_install_command(
    pip_cmd: Sequence[str],
    *,
    requirements: Sequence[str] = (),
    requirements_file: Path | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """`<pip_cmd> install ...`; pip_cmd is e.g. (sys.executable, "-m", "pip"). Option entries are split like a
    shell would (`--extra-index-url URL` becomes two arguments); requirement strings stay whole."""
    argv = [*pip_cmd, "install", "--no-input", "--disable-pip-version-check", *extra_args]
    for item in requirements:
        argv.extend(shlex.split(item) if item.startswith("-") else [item])
    if requirements_file is not None:
        argv.extend(["-r", str(requirements_file)])
    return argv


def git_clone_command(url: str, dest: Path) -> list[str]:
    return ["git", "clone", "--quiet", "--", url, str(dest)]


def git_fetch_command(repo: Path) -> list[str]:
    return ["git", "-C", str(repo), "fetch", "--quiet", "--tags", "--force", "origin"]


def git_checkout_command(repo: Path, ref: str) -> list[str]:
    return ["git", "-C", str(repo), "checkout", "--quiet", "--force", ref]


def git_rev_parse_command(repo: Path, ref: str) -> list[str]:
    """Resolves a ref to a commit sha, or exits non-zero when the ref is unknown locally."""
    return ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"]


def git_submodules_command(repo: Path) -> list[str]:
    return ["git", "-C", str(repo), "submodule", "update", "--init", "--recursive", "--quiet"]


def git_env() -> dict[str, str]:
    # Never wait for a prompt (password, passphrase, unknown host key): without credentials a clone fails at once.
    return {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes"}


def comfy_node_install_command(comfy_cli: str, comfy_home: Path, spec: str) -> list[str]:
    return [comfy_cli, f"--workspace={comfy_home}", "--skip-prompt", "node", "install", spec]


def _apt_name(package: str) -> str:
    """`name=version` and `name:arch` -> the name dpkg-query knows."""
    return package.split("=", 1)[0]


# ---- runner ----


async def run_command(
    argv: Sequence[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run argv (no shell) and collect its output. On timeout the process is killed and CommandFailed raised; with
    `check`, a non-zero exit raises CommandFailed too."""
    full_env = {**os.environ, **(env or {})}
    start = time.monotonic()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=full_env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandFailed(f"cannot start {argv[0]}: {exc.strerror or exc}", argv=argv, returncode=None) from None
    try:
        async with asyncio.timeout(timeout_s):
            stdout_b, stderr_b = await process.communicate()
    except TimeoutError:
        await _kill(process)
        raise CommandFailed(
            f"{_show(argv)} did not finish within {timeout_s:g}s and was killed", argv=argv, returncode=None
        ) from None
    except asyncio.CancelledError:
        await _kill(process)
        raise
    stdout = stdout_b.decode("utf-8", "replace")
    stderr = stderr_b.decode("utf-8", "replace")
    result = CommandResult(tuple(argv), process.returncode or 0, stdout, stderr, time.monotonic() - start)
    if check and result.returncode != 0:
        tail = (stdout + stderr)[-_OUTPUT_TAIL_CHARS:].strip()
        raise CommandFailed(
            f"{_show(argv)} exited with {result.returncode}: {tail}",
            argv=argv,
            returncode=result.returncode,
            output=tail,
        )
    return result


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the whole group: pip and git start children of their own
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            await process.wait()


def _show(argv: Sequence[str]) -> str:
    return shlex.join(argv)
