"""Applying a manifest with local sources only: a git repository made here (its requirements.txt points at a
wheel directory built here), a throwaway venv for pip, models from a loopback server. Applying twice must fetch
nothing the second time: the sources are deleted in between and the model server counts requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.models.cache import ModelCache
from comfyui_api.models.manifest import parse_manifest
from comfyui_api.models.provisioner import Provisioner, ProvisionError, StepReport
from tests.component.models.model_server import ModelServer, serve_models

GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]


def make_wheel(wheel_dir: Path, name: str, version: str = "0.1.0") -> Path:
    """A minimal pure-Python wheel exposing `VALUE` from module `name`."""
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n".encode(),
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel_dir.mkdir(parents=True, exist_ok=True)
    wheel = wheel_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def make_node_repo(repo: Path, requirements: str) -> dict[str, str]:
    """A custom node repository with tags v1 and v2; returns their commits."""
    repo.mkdir(parents=True)
    subprocess.run([*GIT, "init", "--quiet", str(repo)], check=True)
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\n")
    (repo / "requirements.txt").write_text(requirements)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", "v1")
    git(repo, "tag", "v1")
    (repo / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {}\nVERSION = 2\n")
    git(repo, "commit", "--quiet", "-am", "v2")
    git(repo, "tag", "v2")
    return {"v1": git(repo, "rev-parse", "v1^{commit}"), "v2": git(repo, "rev-parse", "v2^{commit}")}


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def venv_value(python: Path, module: str) -> str:
    code = f"import {module}; print({module}.VALUE)"
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def actions(reports: list[StepReport]) -> dict[str, str]:
    return {report.step: report.action for report in reports}


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    files = {"/m/base.safetensors": b"b" * 64, "/m/lora.safetensors": b"l" * 32}
    async with serve_models(ModelServer(files=files)) as running:
        yield running


async def test_manifest_applied_twice_fetches_nothing_the_second_time(server: ModelServer, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "tinypkg")
    make_wheel(wheels, "nodedep")
    repo = tmp_path / "src" / "ComfyUI-Tiny"
    commits = make_node_repo(repo, f"--no-index\n--find-links {wheels}\nnodedep\n")
    venv_python = make_venv(tmp_path / "venv")
    comfy_home = tmp_path / "comfy"
    loras = tmp_path / "elsewhere" / "loras" / "lora.safetensors"
    manifest = parse_manifest(
        {
            "apt": ["coreutils"],
            "pip": ["--no-index", f"--find-links {wheels}", "tinypkg"],
            "custom_nodes": [f"file://{repo}@v1"],
            "models": {
                "before_start": [{"url": server.url("/m/base.safetensors"), "local_path": "checkpoints/base.st"}],
                "after_start": [{"url": server.url("/m/lora.safetensors"), "local_path": str(loras)}],
            },
        },
        model_dir=comfy_home / "models",
    )
    pip_cmd = (sys.executable, "-m", "pip", "--python", str(venv_python))

    async def apply() -> tuple[list[StepReport], dict[str, Any]]:
        cache = ModelCache(tmp_path / "cache")
        provisioner = Provisioner(manifest, comfy_home=comfy_home, cache=cache, pip_cmd=pip_cmd)
        try:
            reports = await provisioner.apply_before_start()
            status = provisioner.start_after_start()
            assert status.blocks_ready(True) or status.finished
            await asyncio.wait_for(provisioner.wait_after_start(), timeout=60)
            return reports, status.to_dict()
        finally:
            await provisioner.aclose()
            await cache.aclose()

    first, first_status = await apply()
    node_dir = comfy_home / "custom_nodes" / "ComfyUI-Tiny"
    assert actions(first) == {
        "apt": "skipped",
        "pip": "installed",
        "custom_nodes[0]": "installed",
        "models.before_start[0]": "downloaded",
    }
    assert git(node_dir, "rev-parse", "HEAD") == commits["v1"]
    assert venv_value(venv_python, "tinypkg") == "0.1.0" and venv_value(venv_python, "nodedep") == "0.1.0"
    assert (comfy_home / "models" / "checkpoints" / "base.st").read_bytes() == b"b" * 64
    assert first_status == {
        "pending": [],
        "done": [{"url": server.url("/m/lora.safetensors"), "local_path": str(loras)}],
        "failed": [],
    }
    assert loras.read_bytes() == b"l" * 32
    assert sorted(p.name for p in (comfy_home / "custom_nodes").iterdir()) == ["ComfyUI-Tiny"]

    shutil.rmtree(repo)  # a second start may not reach any source again
    shutil.rmtree(wheels)
    second, second_status = await apply()
    assert actions(second) == {
        "apt": "skipped",
        "pip": "installed",  # pip ran and found every requirement satisfied (its index is gone)
        "custom_nodes[0]": "skipped",
        "models.before_start[0]": "skipped",
    }
    assert second_status["done"] == first_status["done"] and second_status["failed"] == []
    assert server.gets == {"/m/base.safetensors": 1, "/m/lora.safetensors": 1}
    assert git(node_dir, "rev-parse", "HEAD") == commits["v1"]


async def test_a_node_moves_to_a_new_ref_and_then_stays(tmp_path: Path) -> None:
    repo = tmp_path / "src" / "MoverNode"
    commits = make_node_repo(repo, "")
    (repo / "requirements.txt").unlink()  # requirements are optional
    git(repo, "commit", "--quiet", "-am", "no requirements")
    git(repo, "tag", "v3")
    comfy_home = tmp_path / "comfy"
    cache = ModelCache(tmp_path / "cache")

    async def apply(ref_form: str) -> str:
        manifest = parse_manifest({"custom_nodes": [ref_form]}, model_dir=comfy_home / "models")
        provisioner = Provisioner(manifest, comfy_home=comfy_home, cache=cache)
        [report] = await provisioner.apply_before_start()
        return report.action

    try:
        assert await apply(f"file://{repo}@v1") == "installed"
        assert await apply(f"file://{repo}@{commits['v2']}") == "installed"
        assert git(comfy_home / "custom_nodes" / "MoverNode", "rev-parse", "HEAD") == commits["v2"]
        assert await apply(f"file://{repo}@{commits['v2'][:10]}") == "skipped"
        assert await apply(f"file://{repo}@v3") == "installed"
        assert await apply(f"file://{repo}@v3") == "skipped"
        assert await apply(f"file://{repo}") == "skipped"  # no ref: present is enough
    finally:
        await cache.aclose()


async def test_failing_node_requirements_leave_no_half_installed_node(tmp_path: Path) -> None:
    repo = tmp_path / "src" / "BrokenDeps"
    make_node_repo(repo, f"--no-index\n--find-links {tmp_path / 'no-wheels'}\ndoes-not-exist-anywhere\n")
    comfy_home = tmp_path / "comfy"
    venv_python = make_venv(tmp_path / "venv")
    manifest = parse_manifest({"custom_nodes": [f"file://{repo}"]}, model_dir=comfy_home / "m")
    cache = ModelCache(tmp_path / "cache")
    provisioner = Provisioner(
        manifest,
        comfy_home=comfy_home,
        cache=cache,
        pip_cmd=(sys.executable, "-m", "pip", "--python", str(venv_python)),
    )
    try:
        with pytest.raises(ProvisionError) as caught:
            await provisioner.apply_before_start()
    finally:
        await cache.aclose()
    assert str(caught.value).startswith("custom_nodes[0]: ")
    assert "does-not-exist-anywhere" in str(caught.value)
    assert list((comfy_home / "custom_nodes").iterdir()) == []


async def test_registry_nodes_need_comfy_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    manifest = parse_manifest({"custom_nodes": ["comfyui-kjnodes"]}, model_dir=tmp_path / "models")
    cache = ModelCache(tmp_path / "cache")
    try:
        with pytest.raises(ProvisionError) as caught:
            await Provisioner(manifest, comfy_home=tmp_path / "comfy", cache=cache).apply_before_start()
    finally:
        await cache.aclose()
    message = str(caught.value)
    assert message.startswith("custom_nodes[0]: 'comfyui-kjnodes' is a registry node name")
    assert "comfy-cli" in message and "git URL" in message


async def test_registry_nodes_are_installed_with_comfy_cli_once(tmp_path: Path) -> None:
    calls = tmp_path / "calls.json"
    comfy = tmp_path / "bin" / "comfy"  # stands in for comfy-cli: records its argv, creates the node folder
    comfy.parent.mkdir()
    comfy.write_text(
        f"#!{sys.executable}\n"
        "import json, pathlib, sys\n"
        f"log = pathlib.Path({str(calls)!r})\n"
        "seen = json.loads(log.read_text()) if log.exists() else []\n"
        "log.write_text(json.dumps(seen + [sys.argv[1:]]))\n"
        "home = sys.argv[1].split('=', 1)[1]\n"
        "name = sys.argv[-1].split('@')[0]\n"
        "pathlib.Path(home, 'custom_nodes', name).mkdir(parents=True)\n"
    )
    comfy.chmod(0o755)
    comfy_home = tmp_path / "comfy"
    manifest = parse_manifest({"custom_nodes": ["comfyui-kjnodes@1.0.5"]}, model_dir=comfy_home / "models")
    cache = ModelCache(tmp_path / "cache")
    try:
        for _ in range(2):
            provisioner = Provisioner(manifest, comfy_home=comfy_home, cache=cache, comfy_cli=str(comfy))
            await provisioner.apply_before_start()
    finally:
        await cache.aclose()
    assert json.loads(calls.read_text()) == [
        [f"--workspace={comfy_home}", "--skip-prompt", "node", "install", "comfyui-kjnodes@1.0.5"]
    ]


async def test_after_start_models_are_pending_then_reported(server: ModelServer, tmp_path: Path) -> None:
    server.gate = asyncio.Event()
    model_dir = tmp_path / "models"
    manifest = parse_manifest(
        {
            "models": {
                "after_start": [
                    {"url": server.url("/m/lora.safetensors"), "local_path": "loras/lora.safetensors"},
                    {"url": server.url("/m/missing.safetensors", "token=x"), "local_path": "loras/missing.st"},
                ]
            }
        },
        model_dir=model_dir,
    )
    cache = ModelCache(tmp_path / "cache")
    provisioner = Provisioner(manifest, comfy_home=tmp_path / "comfy", cache=cache)
    try:
        assert await provisioner.apply_before_start() == []
        status = provisioner.start_after_start()
        await server.wait_for_request()
        assert len(status.pending) == 2 and status.blocks_ready(True) and not status.blocks_ready(False)
        server.gate.set()
        await asyncio.wait_for(provisioner.wait_after_start(), timeout=30)
    finally:
        server.gate.set()
        await provisioner.aclose()
        await cache.aclose()
    assert status.finished and not status.blocks_ready(True)
    assert status.done == [
        {"url": server.url("/m/lora.safetensors"), "local_path": str(model_dir / "loras/lora.safetensors")}
    ]
    [failed] = status.failed
    assert failed["url"] == server.url("/m/missing.safetensors")  # the token is not echoed
    assert failed["error"].startswith("models.after_start[1]: ") and "HTTP 404" in failed["error"]


async def test_a_failing_before_start_model_stops_start_up_naming_the_entry(
    server: ModelServer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "models"
    manifest = parse_manifest(
        {
            "models": {
                "before_start": [
                    {"url": server.url("/m/base.safetensors"), "local_path": "checkpoints/base.safetensors"},
                    {"url": server.url("/m/gone.safetensors", "token=hidden"), "local_path": "vae/gone.safetensors"},
                ]
            }
        },
        model_dir=model_dir,
    )
    cache = ModelCache(tmp_path / "cache")
    try:
        with pytest.raises(ProvisionError) as caught:
            await Provisioner(manifest, comfy_home=tmp_path / "comfy", cache=cache).apply_before_start()
    finally:
        await cache.aclose()
    message = str(caught.value)
    assert message.startswith("models.before_start[1]: ") and "HTTP 404" in message and "hidden" not in message
    assert not (model_dir / "vae").exists()
