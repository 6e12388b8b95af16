"""The outbound URL guard, as a server started with the default settings has it: every URL a request brings
(media inputs, webhooks, an http upload target, a per-request S3 endpoint, `POST /download`) is a 400 naming the
field when it leads to loopback or a private address in any spelling, a trusted origin is reached (and a redirect
from it to loopback is not), and ComfyUI itself is never reachable, even with ALLOW_PRIVATE_URLS=true."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.server import ServerProcess, image_graph, load_image_graph, png_bytes, running_server
from tests.servers.processes import ServerProcess as FileServer
from tests.servers.processes import serve_python_module

pytestmark = pytest.mark.simulator_only


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    root = tmp_path_factory.mktemp("files")
    (root / "in.png").write_bytes(png_bytes())
    with serve_python_module("tests.servers.file_server", ["--root", str(root)], log_dir=root) as started:
        yield started


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, files: FileServer) -> Iterator[ServerProcess]:
    env = {"ALLOW_PRIVATE_URLS": "false", "HTTP_TRUSTED_ORIGINS": files.url}
    yield from running_server(tmp_path_factory.mktemp("guarded"), env=env)


@pytest.fixture(scope="module")
def permissive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from running_server(tmp_path_factory.mktemp("permissive"), env={"ALLOW_PRIVATE_URLS": "true"})


def _refusal(server: ServerProcess, body: dict[str, object], path: str = "/prompt") -> dict[str, str]:
    response = httpx.post(server.url(path), json=body, timeout=30)
    assert response.status_code == 400, response.text
    error: dict[str, str] = response.json()["error"]
    assert error["type"] == "url_refused", error
    return error


@pytest.mark.parametrize(
    "host", ["localhost", "127.1", "2130706433", "0x7f.0.0.1", "[::ffff:127.0.0.1]", "169.254.169.254", "10.1.2.3"]
)
def test_a_media_url_to_a_guarded_address_is_a_400_naming_the_input(guarded: ServerProcess, host: str) -> None:
    error = _refusal(guarded, {"prompt": load_image_graph(f"http://{host}:{guarded.port}/in.png")})
    assert error["field"] == "prompt.1.inputs.image"
    assert list(guarded.dirs.output.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"webhook_v2": "http://127.0.0.1:{comfy}/prompt"}, "webhook_v2"),
        ({"webhook": "http://127.1:{comfy}/interrupt"}, "webhook"),
        ({"http_upload": {"url_prefix": "http://[::1]:{comfy}/upload"}}, "http_upload.url_prefix"),
        (
            {
                "credentials": [
                    {
                        "url_pattern": "s3://bucket/**",
                        "auth": {
                            "type": "s3",
                            "access_key_id": "k",
                            "secret_access_key": "s",
                            "endpoint_url": "http://169.254.169.254",
                        },
                    }
                ]
            },
            "credentials[0].auth.endpoint_url",
        ),
    ],
)
def test_where_a_job_will_send_is_checked_before_it_runs(
    guarded: ServerProcess, fields: dict[str, object], field: str
) -> None:
    filled = eval_template(fields, comfy=guarded.comfy_port)
    error = _refusal(guarded, {"prompt": image_graph(), **filled})
    assert error["field"] == field
    assert list(guarded.dirs.output.iterdir()) == []
    jobs = httpx.get(guarded.url("/jobs"), timeout=10).json()["jobs"]
    assert all(job["status"] != "queued" for job in jobs)


def test_post_download_refuses_a_loopback_url_before_fetching(guarded: ServerProcess) -> None:
    body = {"url": f"http://127.0.0.1:{guarded.comfy_port}/system_stats", "model_type": "checkpoints", "wait": True}
    error = _refusal(guarded, body, path="/download")
    assert error["field"] == "url"
    assert not (guarded.dirs.models / "checkpoints" / "system_stats").exists()


def test_a_trusted_origin_is_reached_but_not_a_redirect_from_it_to_loopback(
    guarded: ServerProcess, files: FileServer
) -> None:
    fine = httpx.post(
        guarded.url("/prompt"), json={"prompt": load_image_graph(f"{files.url}/files/in.png")}, timeout=60
    )
    assert fine.status_code == 200, fine.text
    onward = f"{files.url}/redirect?to=http://localhost:{guarded.port}/health"
    error = _refusal(guarded, {"prompt": load_image_graph(onward)})
    assert error["field"] == "prompt.1.inputs.image"


def test_comfyui_and_this_server_stay_unreachable_with_private_urls_allowed(permissive: ServerProcess) -> None:
    for url in (
        f"http://localhost:{permissive.comfy_port}/prompt",
        f"http://127.0.0.1:{permissive.port}/prompt",
    ):
        error = _refusal(permissive, {"prompt": image_graph(), "webhook_v2": url})
        assert error["field"] == "webhook_v2"
        assert "own address" in error["message"]


def test_allow_private_urls_is_announced_at_start(permissive: ServerProcess) -> None:
    assert "ALLOW_PRIVATE_URLS=true" in permissive.logs()


def eval_template(fields: dict[str, object], **values: object) -> dict[str, object]:
    """`fields` with `{name}` in its strings filled from `values`."""

    def fill(value: object) -> object:
        if isinstance(value, str):
            return value.format(**values)
        if isinstance(value, dict):
            return {key: fill(item) for key, item in value.items()}
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    return {key: fill(value) for key, value in fields.items()}
