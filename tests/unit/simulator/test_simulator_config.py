"""The command line: ComfyUI's flags with ComfyUI's defaults, unknown flags ignored, and what they switch on."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.simulator.config import parse_config
from tests.unit.simulator.simulator_support import running_simulator


def test_folders_are_never_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert parse_config([]).base_dir == tmp_path / "home" / ".local/share/comfyui-api/simulator"
    assert parse_config(["--base-directory", "b"]).user_dir == tmp_path / "b" / "user", "ComfyUI's flag still works"


def test_defaults_live_under_the_base_directory(tmp_path: Path) -> None:
    config = parse_config([], default_base=tmp_path)
    assert (config.listen, config.port, config.preview_method, config.preview_size) == ("127.0.0.1", 8188, "none", 512)
    assert [config.input_dir, config.output_dir, config.temp_dir, config.user_dir, config.models_dir] == [
        tmp_path / "input", tmp_path / "output", tmp_path / "temp", tmp_path / "user", tmp_path / "models"]  # fmt: skip
    assert config.profile.version == "0.33.0"  # the newest profile
    assert config.server_features() == {
        "supports_preview_metadata": True,
        "supports_model_type_tags": True,
        "max_upload_size": 104857600,
        "extension": {"manager": {"supports_v4": True}},
        "node_replacements": True,
        "assets": False,
    }
    older = parse_config(["--comfyui-version", "0.3.64"], default_base=tmp_path)
    assert older.server_features() == {"supports_preview_metadata": True, "max_upload_size": 104857600}


def test_an_unknown_comfyui_version_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_config(["--comfyui-version", "0.1.0"], default_base=tmp_path)


def test_comfyui_command_lines_are_accepted(tmp_path: Path) -> None:
    argv = ["--cpu", "--listen", "0.0.0.0", "--port", "8190", "--disable-auto-launch", "--highvram",
            "--temp-directory", str(tmp_path / "t"), "--output-directory", "out", "--preview-method", "auto",
            "--max-upload-size", "50", "--disable-metadata", "--cache-lru", "3"]  # fmt: skip
    config = parse_config(argv, default_base=tmp_path)
    assert (config.listen, config.port, config.preview_method, config.disable_metadata) == (
        "0.0.0.0",
        8190,
        "auto",
        True,
    )
    assert config.temp_dir == tmp_path / "t" / "temp"  # ComfyUI nests a "temp" folder in --temp-directory
    assert config.output_dir.is_absolute() and config.output_dir.name == "out"
    assert config.server_features()["max_upload_size"] == 52428800.0
    assert config.argv[0] == "main.py" and "--highvram" in config.argv


def test_bare_listen_and_cors_flags_take_comfyui_constants(tmp_path: Path) -> None:
    config = parse_config(["--listen", "--enable-cors-header"], default_base=tmp_path)
    assert (config.listen, config.cors_origin) == ("0.0.0.0,::", "*")


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--step-seconds", "-1"], ["--preview-method", "fancy"]])
def test_bad_values_stop_start_up(tmp_path: Path, argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, default_base=tmp_path)


async def test_cors_header_replaces_the_origin_check(tmp_path: Path) -> None:
    async with running_simulator(tmp_path, "--enable-cors-header", "https://app.example") as server:
        status, headers, _ = await server.request("GET", "/queue", headers={"Origin": "http://elsewhere.example"})
        assert (status, headers["Access-Control-Allow-Origin"]) == (200, "https://app.example")
        status, headers, body = await server.request("OPTIONS", "/prompt")
        assert (status, body, headers["Access-Control-Allow-Methods"]) == (200, b"", "POST, GET, DELETE, PUT, OPTIONS")


async def test_start_up_prepares_folders_and_the_checkpoint(tmp_path: Path) -> None:
    stale = tmp_path / "tmp" / "temp" / "old_preview.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")
    async with running_simulator(tmp_path) as server:
        assert not stale.exists()  # ComfyUI empties its temp folder at start
        assert (tmp_path / "models" / "checkpoints" / "sim-sd15.safetensors").is_file()
        assert all((tmp_path / d).is_dir() for d in ("input", "output", "user", "models/loras"))
        assert server.sim.config.base_dir == tmp_path
