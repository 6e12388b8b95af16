"""`python -m build` makes an sdist and a wheel (the wheel built from the sdist, so the sdist is complete); the wheel
installs into a clean venv and passes the smoke test there (`tests/smoke.py`: --version, --help, serve with the
simulator from an empty working directory, one job making a PNG, SIGTERM exit 0).

The clean venv reaches the already installed dependencies through a path file (nothing is downloaded), but never
this checkout: the package it runs is the one the wheel put into it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from comfyui_api.version import package_version
from tests.smoke import smoke

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_NOT_SOURCE = (".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", "*_cache", ".ci")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("packaging")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    out = root / "dist"
    # --no-isolation: the build backend installed here (setuptools), not one fetched from an index
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return sdist, wheel


def test_the_sdist_and_the_wheel_carry_the_whole_package(built: tuple[Path, Path]) -> None:
    sdist, wheel = built
    version = package_version()
    assert sdist.name == f"comfyui_api-{version}.tar.gz" and wheel.name.startswith(f"comfyui_api-{version}-py3")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {
        "pyproject.toml",
        "README.md",
        "comfyui_api/cli/__init__.py",
        "comfyui_api/simulator/__main__.py",
    } <= in_sdist
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        metadata = archive.read(f"comfyui_api-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"comfyui_api-{version}.dist-info/entry_points.txt").decode()
    package_files = {str(path.relative_to(REPO)) for path in (REPO / "comfyui_api").rglob("*.py")}
    assert package_files <= in_wheel, f"missing from the wheel: {sorted(package_files - in_wheel)[:5]}"
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in in_wheel)
    assert "comfyui-api = comfyui_api.cli:main" in entry_points
    assert "Provides-Extra: simulator" in metadata
    assert 'Requires-Dist: numpy>=1.26; extra == "simulator"' in metadata, "numpy only with the simulator extra"


def test_the_wheel_runs_from_a_clean_venv(built: tuple[Path, Path], tmp_path: Path) -> None:
    _, wheel = built
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = sysconfig.get_paths()["purelib"]  # this venv's dependencies, without its editable comfyui-api
    target = Path(subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                          text=True).strip())  # fmt: skip
    (target / "installed_dependencies.pth").write_text(installed + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
    )
    where = subprocess.check_output(
        [python, "-c", "import comfyui_api; print(comfyui_api.__file__)"], text=True, cwd=tmp_path
    )
    assert Path(where.strip()).is_relative_to(venv), f"comfyui_api came from {where.strip()}, not the wheel"

    report = smoke([str(venv / "bin" / "comfyui-api")])
    assert report.version == package_version()
    assert report.png_bytes > 0 and report.exit_code == 0
