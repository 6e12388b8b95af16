"""README's set-up commands stay true: CI runs exactly the test command README gives."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


def test_ci_runs_readmes_test_command_verbatim() -> None:
    commands = _quick_start_commands()
    test_command = next(command for command in commands if "pytest" in command)
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_server_command_installs_and_starts_the_server() -> None:
    server_command = _quick_start_commands()[0]
    # with no ComfyUI configured it runs the simulator, whose dependencies are the `simulator` extra
    assert "pip install -e '.[simulator]'" in server_command
    assert server_command.endswith(".venv/bin/comfyui-api")
