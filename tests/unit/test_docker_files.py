"""The Dockerfiles build from the repository's root: every file they COPY exists (or is the binary that
scripts/build-binary makes) and is let through by .dockerignore, which shuts out everything else."""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ("docker/Dockerfile", "docker/runpod/Dockerfile")
BUILT = {"dist/comfyui-api"}  # made by scripts/build-binary before `docker build`


def copied_sources(dockerfile: Path) -> list[str]:
    sources: list[str] = []
    for line in dockerfile.read_text().replace("\\\n", " ").splitlines():  # continued lines joined
        words = shlex.split(line, comments=True)
        if words and words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from") for w in words):
            sources += [word for word in words[1:-1] if not word.startswith("--")]
    return sources


def let_through(path: str, rules: list[str]) -> bool:
    """.dockerignore's verdict on one path (the last matching rule wins; a rule on a folder covers what is in it)."""
    allowed = True
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule[1:] if negated else rule
        parts = Path(path).parts
        prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern.rstrip("/")) for prefix in prefixes):
            allowed = negated
    return allowed


@pytest.mark.parametrize("name", DOCKERFILES)
def test_what_a_dockerfile_copies_exists_and_is_let_through(name: str) -> None:
    rules = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = copied_sources(REPO_ROOT / name)
    assert sources, f"{name} copies nothing"
    for source in sources:
        assert source in BUILT or (REPO_ROOT / source).exists(), f"{name}: {source} is not in the repository"
        assert let_through(source, rules), f"{name}: .dockerignore keeps {source} out of the build context"
    assert not let_through("tests/conftest.py", rules) and not let_through(".venv/bin/python", rules)
