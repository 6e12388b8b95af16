"""The pure command builders for apt, dpkg, pip, git and comfy-cli, the dpkg output parser, and the runner's
timeout and failure reporting (with real, tiny processes)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from comfyui_api.models.commands import (
    CommandFailed,
    apt_env,
    apt_install_command,
    apt_update_command,
    comfy_node_install_command,
    dpkg_status_command,
    git_checkout_command,
    git_clone_command,
    git_env,
    git_fetch_command,
    git_rev_parse_command,
    git_submodules_command,
    pip_install_command,
    run_command,
)
from comfyui_api.models.services import pip_command_for
from comfyui_api.models.system_packages import apt_base_name, parse_dpkg_status


def test_apt_commands() -> None:
    assert apt_update_command() == ["apt-get", "update"]
    assert apt_install_command(["libgl1", "ffmpeg=7:5.1"]) == [
        "apt-get",
        "install",
        "-y",
        "--no-install-recommends",
        "libgl1",
        "ffmpeg=7:5.1",
    ]
    assert apt_env() == {"DEBIAN_FRONTEND": "noninteractive"}


def test_dpkg_query_asks_for_bare_names() -> None:
    argv = dpkg_status_command(["ffmpeg=7:5.1", "libgl1"])
    assert argv[:2] == ["dpkg-query", "-W"]
    assert argv[2] == "-f=${Package} ${db:Status-Status}\\n"
    assert argv[3:] == ["ffmpeg", "libgl1"]


def test_dpkg_output_parsing() -> None:
    output = "coreutils installed\nlibfoo config-files\nlibbar not-installed\n\n"
    assert parse_dpkg_status(output) == {"coreutils"}
    assert [apt_base_name(p) for p in ("a=1.0", "b:amd64", "c:i386=2", "d")] == ["a", "b", "c", "d"]


def test_pip_command_uses_the_given_interpreter_and_splits_only_options() -> None:
    argv = pip_install_command(
        (sys.executable, "-m", "pip"),
        requirements=["numpy>=1.26, <3", "--extra-index-url https://x.example/simple"],
        extra_args=("--target", "/t"),
    )
    assert argv == [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-input",
        "--disable-pip-version-check",
        "--target",
        "/t",
        "numpy>=1.26, <3",
        "--extra-index-url",
        "https://x.example/simple",
    ]
    from_file = pip_install_command(("pip",), requirements_file=Path("/n/requirements.txt"))
    assert from_file[-2:] == ["-r", "/n/requirements.txt"]


def test_git_commands() -> None:
    repo = Path("/c/custom_nodes/Foo")
    assert git_clone_command("https://h/o/Foo", repo) == ["git", "clone", "--quiet", "--", "https://h/o/Foo", str(repo)]
    assert git_fetch_command(repo) == ["git", "-C", str(repo), "fetch", "--quiet", "--tags", "--force", "origin"]
    assert git_checkout_command(repo, "abc") == ["git", "-C", str(repo), "checkout", "--quiet", "--force", "abc"]
    assert git_rev_parse_command(repo, "v1") == [
        "git",
        "-C",
        str(repo),
        "rev-parse",
        "--verify",
        "--quiet",
        "v1^{commit}",
    ]
    assert git_submodules_command(repo)[3:] == ["submodule", "update", "--init", "--recursive", "--quiet"]


def test_comfy_cli_command() -> None:
    assert comfy_node_install_command("/usr/bin/comfy", Path("/opt/ComfyUI"), "kj@1.0") == [
        "/usr/bin/comfy",
        "--workspace=/opt/ComfyUI",
        "--skip-prompt",
        "node",
        "install",
        "kj@1.0",
    ]


async def test_run_command_collects_output() -> None:
    result = await run_command([sys.executable, "-c", "print('hi')"], timeout_s=30)
    assert result.returncode == 0
    assert result.stdout.strip() == "hi"


async def test_run_command_reports_failures_with_output_tail() -> None:
    with pytest.raises(CommandFailed) as caught:
        await run_command([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], timeout_s=30)
    assert caught.value.returncode == 3
    assert "exited with 3" in str(caught.value) and "boom" in str(caught.value)
    unchecked = await run_command([sys.executable, "-c", "raise SystemExit(4)"], timeout_s=30, check=False)
    assert unchecked.returncode == 4


async def test_run_command_kills_on_timeout() -> None:
    with pytest.raises(CommandFailed, match=r"did not finish within 0\.5s"):
        await run_command([sys.executable, "-c", "import time; time.sleep(60)"], timeout_s=0.5)


async def test_run_command_missing_executable() -> None:
    with pytest.raises(CommandFailed, match="cannot start"):
        await run_command(["/nonexistent/tool"], timeout_s=5)


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (("python", "main.py", "--listen"), ("python", "-m", "pip")),
        (("/opt/venv/bin/python3.11", "main.py"), ("/opt/venv/bin/python3.11", "-m", "pip")),
        (("bash", "start.sh"), (sys.executable, "-m", "pip")),
        ((), (sys.executable, "-m", "pip")),
    ],
)
def test_pip_installs_into_the_interpreter_that_runs_comfyui(cmd: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert pip_command_for(cmd) == expected


def test_git_never_waits_for_a_prompt() -> None:
    env = git_env()
    assert env["GIT_TERMINAL_PROMPT"] == "0" and "BatchMode=yes" in env["GIT_SSH_COMMAND"]
