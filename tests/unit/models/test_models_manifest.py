"""Manifest parsing and validation: every section, every git ref form, and errors that name the entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.models.manifest import (
    GitNode,
    Manifest,
    ManifestError,
    RegistryNode,
    load_manifest,
    parse_custom_node,
    parse_manifest,
)

MODEL_DIR = Path("/srv/comfy/models")
REPO_ROOT = Path(__file__).resolve().parents[3]


def parse(data: Any) -> Manifest:
    return parse_manifest(data, model_dir=MODEL_DIR, source="test")


def test_full_manifest_parses_into_frozen_dataclasses() -> None:
    manifest = parse(
        {
            "apt": ["libgl1", "ffmpeg=7:5.1.6-0+deb12u1", "libc6:amd64"],
            "pip": ["numpy>=1.26", "--extra-index-url https://download.example/whl"],
            "custom_nodes": ["comfyui-kjnodes", "comfyui-impact-pack@8.8.1", "https://github.com/o/Repo.git@v2"],
            "models": {
                "before_start": [{"url": "https://h/a.safetensors", "local_path": "checkpoints/a.safetensors"}],
                "after_start": [{"url": "s3://bucket/l.safetensors", "local_path": "/abs/loras/l.safetensors"}],
            },
        }
    )
    assert manifest.apt == ("libgl1", "ffmpeg=7:5.1.6-0+deb12u1", "libc6:amd64")
    assert manifest.pip == ("numpy>=1.26", "--extra-index-url https://download.example/whl")
    assert manifest.custom_nodes == (
        RegistryNode("comfyui-kjnodes"),
        RegistryNode("comfyui-impact-pack", "8.8.1"),
        GitNode(url="https://github.com/o/Repo.git", name="Repo", ref="v2"),
    )
    assert manifest.before_start[0].local_path == MODEL_DIR / "checkpoints/a.safetensors"
    assert manifest.before_start[0].entry == "models.before_start[0]"
    assert manifest.after_start[0].local_path == Path("/abs/loras/l.safetensors")
    assert not manifest.is_empty
    with pytest.raises(AttributeError):
        manifest.apt = ()  # type: ignore[misc]


@pytest.mark.parametrize("data", [None, {}, {"models": None}, {"models": {"before_start": []}}])
def test_empty_documents_are_empty_manifests(data: Any) -> None:
    assert parse(data).is_empty


@pytest.mark.parametrize(
    ("text", "url", "name", "ref"),
    [
        ("https://github.com/o/ComfyUI-Foo", "https://github.com/o/ComfyUI-Foo", "ComfyUI-Foo", None),
        ("https://github.com/o/ComfyUI-Foo.git", "https://github.com/o/ComfyUI-Foo.git", "ComfyUI-Foo", None),
        ("https://github.com/o/Foo@v1.2.3", "https://github.com/o/Foo", "Foo", "v1.2.3"),
        ("https://github.com/o/Foo.git@abc123", "https://github.com/o/Foo.git", "Foo", "abc123"),
        ("https://github.com/o/Foo/tree/dev", "https://github.com/o/Foo", "Foo", "dev"),
        ("https://github.com/o/Foo/tree/feature/x", "https://github.com/o/Foo", "Foo", "feature/x"),
        ("https://github.com/o/Foo/commit/0123abcd", "https://github.com/o/Foo", "Foo", "0123abcd"),
        ("https://github.com/o/Foo/releases/tag/v3", "https://github.com/o/Foo", "Foo", "v3"),
        ("https://gitlab.com/g/Foo/-/tree/main", "https://gitlab.com/g/Foo", "Foo", "main"),
        ("https://gitlab.com/g/Foo/-/commit/beef", "https://gitlab.com/g/Foo", "Foo", "beef"),
        ("https://user@host.example/o/Foo", "https://user@host.example/o/Foo", "Foo", None),
        ("git@github.com:o/Foo.git", "git@github.com:o/Foo.git", "Foo", None),
        ("git@github.com:o/Foo.git@v1", "git@github.com:o/Foo.git", "Foo", "v1"),
        ("file:///tmp/tree/commit/Foo", "file:///tmp/tree/commit/Foo", "Foo", None),
        ("file:///tmp/repos/Foo@v1", "file:///tmp/repos/Foo", "Foo", "v1"),
    ],
)
def test_git_url_forms(text: str, url: str, name: str, ref: str | None) -> None:
    assert parse_custom_node(text, "custom_nodes[0]") == GitNode(url=url, name=name, ref=ref)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1], "test: the manifest must be a mapping"),
        ({"modles": {}}, "unknown section(s) ['modles']"),
        ({"apt": "libgl1"}, "apt: expected a list"),
        ({"apt": ["libgl1", "-o Dpkg::x"]}, "apt[1]: '-o Dpkg::x' is not a Debian package name"),
        ({"pip": ["numpy", ""]}, "pip[1]: expected a requirement string"),
        ({"pip": ["--index-url 'unterminated"]}, "pip[0]: cannot split the pip option"),
        ({"custom_nodes": ["ok-node", "ftp://host/x", "a"]}, "custom_nodes[1]: ftp:// is not a git URL scheme"),
        ({"custom_nodes": ["ok", "ok"]}, "custom_nodes[1]: custom node 'ok' is already given by custom_nodes[0]"),
        ({"custom_nodes": ["a", "b", "bad name!"]}, "custom_nodes[2]: 'bad name!' is neither a registry node name"),
        ({"custom_nodes": [{"url": "x"}]}, "custom_nodes[0]: expected a registry name or a git URL"),
        ({"custom_nodes": ["https://github.com/o/Foo@bad..ref~"]}, "custom_nodes[0]: 'bad..ref~' is not a valid"),
        ({"models": []}, "models: expected a mapping"),
        ({"models": {"before": []}}, "models: unknown key(s) ['before']"),
        ({"models": {"after_start": [{"url": "https://h/a"}]}}, "models.after_start[0].local_path: expected"),
        (
            {"models": {"before_start": [{"url": "h/a", "local_path": "x/a"}]}},
            "models.before_start[0].url: expected a URL",
        ),
        (
            {"models": {"before_start": [{"url": "https://h/a", "local_path": "../etc/a"}]}},
            "models.before_start[0].local_path: '../etc/a' may not contain '..'",
        ),
        (
            {"models": {"before_start": [{"url": "https://h/a", "local_path": "loras/"}]}},
            "models.before_start[0].local_path: 'loras/' names a folder",
        ),
        (
            {"models": {"before_start": [{"url": "https://h/a", "local_path": "x/a", "sha": "1"}]}},
            "models.before_start[0]: unknown key(s) ['sha']",
        ),
        (
            {
                "models": {
                    "before_start": [{"url": "https://h/a", "local_path": "x/a"}],
                    "after_start": [{"url": "https://h/b", "local_path": "x/a"}],
                }
            },
            "models.after_start[0]: local_path",
        ),
    ],
)
def test_validation_errors_name_the_entry(data: Any, expected: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(data)
    assert expected in str(caught.value)
    assert str(caught.value).startswith("test: ")


def test_salad_style_local_paths_are_read_relative_to_the_model_dir() -> None:
    manifest = parse(
        {"models": {"before_start": [{"url": "https://h/d.safetensors", "local_path": "models/checkpoints/d.st"}]}}
    )
    assert manifest.before_start[0].local_path == MODEL_DIR / "checkpoints/d.st"


def test_manifest_json_wins_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text("apt: [from-file]\n")
    manifest = load_manifest(manifest_path=path, manifest_json=json.dumps({"apt": ["from-json"]}), model_dir=MODEL_DIR)
    assert manifest is not None and manifest.apt == ("from-json",)
    from_file = load_manifest(manifest_path=path, manifest_json=None, model_dir=MODEL_DIR)
    assert from_file is not None and from_file.apt == ("from-file",)
    assert load_manifest(manifest_path=None, manifest_json=None, model_dir=MODEL_DIR) is None


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("m.txt", "apt: []", "must end in .json, .yml or .yaml"),
        ("m.yaml", "apt: [unclosed", "not valid YAML"),
        ("m.json", "{", "not valid JSON"),
        ("m.yml", "pip: [1]", "pip[0]: expected a requirement string"),
    ],
)
def test_file_errors_name_the_variable(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest_path=path, manifest_json=None, model_dir=MODEL_DIR)
    assert str(caught.value).startswith(f"MANIFEST={path}")
    assert expected in str(caught.value)


def test_missing_file_and_bad_json_env() -> None:
    with pytest.raises(ManifestError, match="cannot read the file"):
        load_manifest(manifest_path=Path("/nonexistent/m.yml"), manifest_json=None, model_dir=MODEL_DIR)
    with pytest.raises(ManifestError, match="MANIFEST_JSON is not valid JSON"):
        load_manifest(manifest_path=None, manifest_json="{nope", model_dir=MODEL_DIR)


@pytest.mark.parametrize("name", ["minimal.yml", "sdxl.yml", "flux.json"])
def test_shipped_example_manifests_match_the_schema(name: str) -> None:
    manifest = load_manifest(manifest_path=REPO_ROOT / "manifests" / name, manifest_json=None, model_dir=MODEL_DIR)
    assert manifest is not None and manifest.before_start
    for model in manifest.before_start + manifest.after_start:
        assert model.local_path.is_relative_to(MODEL_DIR)
        assert model.url.startswith("https://")
