"""Settings: defaults, Salad's variable names, and start-up errors that name the variable."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from comfyui_api import settings as settings_module
from comfyui_api.settings import SYSTEM_EVENT_NAMES, VARIABLES, SettingsError, load_settings, with_env_file


def test_an_unusable_comfy_home_or_cmd_is_an_error_never_the_simulator(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="COMFY_HOME"):
        load_settings({"COMFY_HOME": str(tmp_path / "missing"), "COMFYUI_API_HOME": str(tmp_path)})
    with pytest.raises(SettingsError, match="CMD"):
        load_settings({"CMD": "no-such-program-here --listen", "COMFYUI_API_HOME": str(tmp_path)})
    with pytest.raises(SettingsError, match="CMD"):
        load_settings({"CMD": "./main-missing.sh", "COMFY_HOME": str(tmp_path), "COMFYUI_API_HOME": str(tmp_path)})


def test_defaults_without_comfyui_use_the_simulator(tmp_path: Path) -> None:
    if Path("/opt/ComfyUI/main.py").is_file():
        pytest.skip("this machine has a ComfyUI at the default place")
    settings = load_settings({"COMFYUI_API_HOME": str(tmp_path)})
    assert settings.comfy.using_simulator
    assert settings.comfy.cmd[:3] == (sys.executable, "-m", "comfyui_api.simulator")
    assert settings.comfy.input_dir == tmp_path / "simulator" / "input"
    assert "--input-directory" in settings.comfy.cmd
    assert settings.server.port == 3000
    assert settings.server.host == "::"


def test_comfy_home_with_main_py_launches_comfyui(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    settings = load_settings({"COMFY_HOME": str(tmp_path), "DIRECT_ADDRESS": "0.0.0.0", "COMFYUI_PORT_HOST": "9999"})
    assert not settings.comfy.using_simulator
    assert settings.comfy.cmd == ("python", "main.py", "--listen", "0.0.0.0", "--port", "9999")
    assert settings.comfy.output_dir == tmp_path / "output"
    assert settings.comfy.base_url == "http://0.0.0.0:9999"
    verbose = load_settings({"COMFY_HOME": str(tmp_path), "COMFY_LOG_LEVEL": "warning"}).comfy.cmd
    assert verbose[-2:] == ("--verbose", "WARNING"), "worker-comfyui's COMFY_LOG_LEVEL reaches ComfyUI"
    with pytest.raises(SettingsError, match="COMFY_LOG_LEVEL"):
        load_settings({"COMFY_HOME": str(tmp_path), "COMFY_LOG_LEVEL": "loud"})


@pytest.mark.parametrize("venv", ["venv", ".venv"])
def test_comfy_home_with_its_own_venv_runs_that_python(tmp_path: Path, venv: str) -> None:
    (tmp_path / "main.py").write_text("")
    python = tmp_path / venv / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    settings = load_settings({"COMFY_HOME": str(tmp_path)})
    assert settings.comfy.cmd[:2] == (str(python), "main.py")


def test_comfyui_python_names_the_interpreter(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("")
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    chosen = tmp_path / "py311"
    chosen.write_text("")
    settings = load_settings({"COMFY_HOME": str(tmp_path), "COMFYUI_PYTHON": str(chosen)})
    assert settings.comfy.cmd[:2] == (str(chosen), "main.py")
    with pytest.raises(SettingsError, match="COMFYUI_PYTHON"):
        load_settings({"COMFY_HOME": str(tmp_path), "COMFYUI_PYTHON": str(tmp_path / "nope")})


def test_cmd_is_split_like_a_shell() -> None:
    settings = load_settings({"CMD": f"'{sys.executable}' main.py --listen '127.0.0.1' --port 8188"})
    assert settings.comfy.cmd == (sys.executable, "main.py", "--listen", "127.0.0.1", "--port", "8188")


def test_attach_mode_has_no_command_and_reads_outputs_over_http() -> None:
    settings = load_settings({"COMFYUI_URL": "http://gpu-box:8188/"})
    assert settings.comfy.cmd == ()
    assert settings.comfy.base_url == "http://gpu-box:8188"
    assert settings.comfy.outputs_colocated is False


def test_inputs_are_uploaded_to_an_attached_comfyui_unless_declared_shared() -> None:
    assert load_settings({}).comfy.inputs_colocated is True
    assert load_settings({"COMFYUI_URL": "http://gpu-box:8188"}).comfy.inputs_colocated is False
    shared = load_settings({"COMFYUI_URL": "http://gpu-box:8188", "COMFYUI_INPUTS_COLOCATED": "true"})
    assert (shared.comfy.inputs_colocated, shared.comfy.outputs_colocated) == (True, False)


def test_ipv6_direct_address_is_bracketed() -> None:
    assert load_settings({"DIRECT_ADDRESS": "::1"}).comfy.base_url == "http://[::1]:8188"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"PORT": "abc"}, "PORT"),
        ({"PORT": "0"}, "PORT"),
        ({"MAX_QUEUE_DEPTH": "-1"}, "MAX_QUEUE_DEPTH"),
        ({"ALWAYS_RESTART_COMFYUI": "maybe"}, "ALWAYS_RESTART_COMFYUI"),
        ({"COMFYUI_URL": "gpu-box:8188"}, "COMFYUI_URL"),
        ({"SYSTEM_WEBHOOK_EVENTS": "progress,nonsense"}, "SYSTEM_WEBHOOK_EVENTS"),
        ({"MANIFEST_JSON": "{not json"}, "MANIFEST_JSON"),
        ({"CMD": "python 'unterminated"}, "CMD"),
        ({"HTTP_AUTH_HEADER_NAME": "X-Token"}, "HTTP_AUTH_HEADER_VALUE"),
        ({"WARMUP_PROMPT_FILE": "/a.json", "WARMUP_PROMPT_URL": "http://x/a.json"}, "WARMUP_PROMPT_URL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)


def test_system_events_all_and_meta() -> None:
    settings = load_settings({"SYSTEM_WEBHOOK_EVENTS": "all", "SYSTEM_META_region": "eu", "SYSTEM_META_": "x"})
    assert settings.webhooks.system_events == frozenset(SYSTEM_EVENT_NAMES)
    assert dict(settings.webhooks.system_meta) == {"region": "eu"}


def test_sizes_are_converted_to_bytes() -> None:
    settings = load_settings({"MAX_BODY_SIZE_MB": "2", "LRU_CACHE_SIZE_GB": "0.5"})
    assert settings.server.max_body_bytes == 2 * 1024 * 1024
    assert settings.models.lru_cache_size_bytes == 512 * 1024 * 1024


def test_system_events_accept_salads_bare_storage_names() -> None:
    settings = load_settings({"SYSTEM_WEBHOOK_EVENTS": "file_uploaded, progress"})
    assert settings.webhooks.system_events == frozenset({"storage.file_uploaded", "progress"})


def test_every_variable_read_is_declared_for_help_and_no_other() -> None:
    """`comfyui-api --help` lists VARIABLES: it must name exactly what load_settings reads."""
    source = (Path(settings_module.__file__)).read_text()
    read = set(re.findall(r'env\.\w+\("([A-Z0-9_]+)"', source))
    declared = [name for name, _, _ in VARIABLES]
    assert len(declared) == len(set(declared))
    assert read == set(declared)


def test_a_frozen_build_runs_its_simulator_as_itself(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if Path("/opt/ComfyUI/main.py").is_file():
        pytest.skip("this machine has a ComfyUI at the default place")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    settings = load_settings({"COMFYUI_API_HOME": str(tmp_path)})
    assert settings.comfy.using_simulator
    assert settings.comfy.cmd[:2] == (sys.executable, "simulator")  # never `-m`, which the binary cannot run


@pytest.mark.parametrize(
    ("given", "level"),
    [
        ("trace", "DEBUG"),
        ("debug", "DEBUG"),
        ("info", "INFO"),
        ("warn", "WARNING"),
        ("error", "ERROR"),
        ("fatal", "CRITICAL"),
    ],
)
def test_salads_log_levels_work(given: str, level: str, tmp_path: Path) -> None:
    assert load_settings({"LOG_LEVEL": given, "COMFYUI_API_HOME": str(tmp_path)}).server.log_level == level


def test_an_unknown_log_level_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="LOG_LEVEL='loud'"):
        load_settings({"LOG_LEVEL": "loud", "COMFYUI_API_HOME": str(tmp_path)})


def test_the_api_v1_gateways_setting_names_work_as_aliases() -> None:
    assert load_settings({"COMFYUI_HOST": "10.0.0.5", "COMFYUI_PORT": "8190"}).comfy.url == "http://10.0.0.5:8190"
    assert load_settings({"COMFYUI_HOST": "gpu-box"}).comfy.url == "http://gpu-box:8188"
    assert load_settings({"COMFYUI_HOST": "fd00::5"}).comfy.url == "http://[fd00::5]:8188"
    both = {"COMFYUI_URL": "http://real:8188", "COMFYUI_HOST": "other"}
    assert load_settings(both).comfy.url == "http://real:8188", "COMFYUI_URL wins"
    assert load_settings({"DEBUG": "true"}).server.log_level == "DEBUG"
    assert load_settings({"RUNPOD_DEBUG": "1"}).server.log_level == "DEBUG"
    assert load_settings({"DEBUG": "true", "LOG_LEVEL": "warning"}).server.log_level == "WARNING"
    with pytest.raises(SettingsError, match="COMFYUI_PORT"):
        load_settings({"COMFYUI_HOST": "gpu-box", "COMFYUI_PORT": "http"})


def test_a_dot_env_file_in_the_working_directory_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from comfyui_api.cli.server import settings_or_exit

    (tmp_path / ".env").write_text('# the gateway\'s file\nCOMFYUI_HOST=10.1.1.1\nPORT="3100"\nMAX_QUEUE_DEPTH=4\n')
    merged, path = with_env_file({"MAX_QUEUE_DEPTH": "9"}, tmp_path)
    assert path == tmp_path / ".env"
    assert merged == {"COMFYUI_HOST": "10.1.1.1", "PORT": "3100", "MAX_QUEUE_DEPTH": "9"}
    assert with_env_file({"A": "1"}, tmp_path / "elsewhere") == ({"A": "1"}, None)

    monkeypatch.chdir(tmp_path)
    settings = settings_or_exit({"MAX_QUEUE_DEPTH": "9", "COMFYUI_API_HOME": str(tmp_path / "home")})
    assert not isinstance(settings, int)
    assert settings.env_file == tmp_path / ".env"
    assert (settings.comfy.url, settings.server.port, settings.server.max_queue_depth) == (
        "http://10.1.1.1:8188",
        3100,
        9,
    )
