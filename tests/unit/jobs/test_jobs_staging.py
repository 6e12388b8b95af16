"""Input staging: base64, data URIs and URLs become real files under <input_dir>/<job id>/; errors name the field.

Downloads go to a real aiohttp server on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from comfyui_api.errors import InputStagingError, InvalidRequest
from comfyui_api.jobs.staging import InputStager, decode_base64, looks_like_base64
from comfyui_api.settings import JobSettings
from comfyui_api.storage.base import Credential
from tests.unit.jobs.samples import audio_bytes, image_bytes

PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")


def load_image(value: object, node_id: str = "1") -> dict:
    return {
        node_id: {"class_type": "LoadImage", "inputs": {"image": value}},
        "9": {"class_type": "SaveImage", "inputs": {"images": [node_id, 0], "filename_prefix": "out"}},
    }


@dataclass
class MediaServer:
    """Serves /png, /big, /slow, /chunked-big; counts concurrent requests."""

    base_url: str = ""
    active: int = 0
    max_active: int = 0
    paths: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
async def media_server() -> AsyncIterator[MediaServer]:
    state = MediaServer()

    @web.middleware
    async def track(request: web.Request, handler) -> web.StreamResponse:
        state.paths.append(request.path)
        state.active += 1
        state.max_active = max(state.max_active, state.active)
        try:
            return await handler(request)
        finally:
            state.active -= 1

    async def png(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.Response(body=PNG, content_type="application/octet-stream")

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(4096))

    async def chunked_big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(8):
            await response.write(b"\x89PNG\r\n\x1a\n" + bytes(1024))
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1.0)
        return web.Response(body=PNG)

    async def text(request: web.Request) -> web.StreamResponse:
        return web.Response(text="just words, not media")

    app = web.Application(middlewares=[track])
    for path, handler in {"/png": png, "/big": big, "/chunked-big": chunked_big, "/slow": slow, "/text": text}.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def make_stager(tmp_path: Path, http: httpx.AsyncClient, **overrides) -> InputStager:
    settings = JobSettings(**{"max_input_bytes": 1024 * 1024, "download_timeout_s": 2.0, **overrides})
    return InputStager(settings, tmp_path / "input", http=http)


def assert_real_file(path: Path, data: bytes) -> None:
    assert path.is_file() and not path.is_symlink()
    assert path.read_bytes() == data


async def test_base64_becomes_a_real_file_and_the_graph_points_at_it(tmp_path, http) -> None:
    stager = make_stager(tmp_path, http)
    graph = load_image(base64.b64encode(PNG).decode())
    staged_graph, staged = await stager.stage("job-1", graph)
    assert staged_graph["1"]["inputs"]["image"] == "job-1/1-image.png"
    assert_real_file(tmp_path / "input" / "job-1" / "1-image.png", PNG)
    assert staged[0].content_type == "image/png"
    assert graph["1"]["inputs"]["image"] != staged_graph["1"]["inputs"]["image"]  # the caller's graph is untouched
    stager.cleanup("job-1")
    assert not (tmp_path / "input" / "job-1").exists()


@pytest.mark.parametrize(
    "value",
    [
        "data:image/png;base64," + base64.b64encode(JPEG).decode(),  # declared type is ignored: bytes decide
        base64.urlsafe_b64encode(JPEG).decode().rstrip("="),
        "\n".join(base64.b64encode(JPEG).decode()[i : i + 76] for i in range(0, 2000, 76)),
    ],
    ids=["data-uri", "urlsafe-unpadded", "wrapped-lines"],
)
async def test_encodings_are_decoded_and_sniffed(tmp_path, http, value) -> None:
    staged_graph, staged = await make_stager(tmp_path, http).stage("j", load_image(value))
    assert staged_graph["1"]["inputs"]["image"] == "j/1-image.jpg"
    assert_real_file(staged[0].path, JPEG)


async def test_percent_encoded_data_uri(tmp_path, http) -> None:
    value = "data:application/octet-stream," + urllib.parse.quote_from_bytes(PNG)
    _, staged = await make_stager(tmp_path, http).stage("j", load_image(value))
    assert_real_file(staged[0].path, PNG)


async def test_audio_input_keeps_its_real_extension(tmp_path, http) -> None:
    flac = audio_bytes("flac", "flac")
    graph = {"1": {"class_type": "LoadAudio", "inputs": {"audio": base64.b64encode(flac).decode()}}}
    staged_graph, _ = await make_stager(tmp_path, http).stage("j", graph)
    assert staged_graph["1"]["inputs"]["audio"] == "j/1-audio.flac"


@pytest.mark.parametrize("value", ["example.png", "sub/dir/pic.webp", "photo", "clip.mp4 [input]"])
async def test_plain_file_names_pass_through(tmp_path, http, value) -> None:
    graph = load_image(value)
    staged_graph, staged = await make_stager(tmp_path, http).stage("j", graph)
    assert staged_graph == graph
    assert staged == []
    assert not (tmp_path / "input" / "j").exists()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\win.ini", "absolute"),
        ("../../secret.png", "'..'"),
        ("sub\\..\\..\\x.png", "'..'"),
        ("a\x00.png", "NUL"),
        ("someone_else_00001_.png [output]", "input folder"),
        ("preview.png [temp]", "input folder"),
    ],
)
async def test_names_reaching_outside_the_input_folder_are_refused(tmp_path, http, value, fragment) -> None:
    with pytest.raises(InvalidRequest, match=fragment) as refused:
        await make_stager(tmp_path, http).stage("j", load_image(value))
    assert refused.value.field == "prompt.1.inputs.image"
    assert str(tmp_path) not in refused.value.message


async def test_a_symlink_out_of_the_input_folder_is_refused(tmp_path, http) -> None:
    (tmp_path / "input").mkdir(exist_ok=True)
    (tmp_path / "input" / "escape").symlink_to(tmp_path.parent)
    with pytest.raises(InvalidRequest, match="inside ComfyUI's input folder"):
        await make_stager(tmp_path, http).stage("j", load_image("escape/x.png"))


@pytest.mark.parametrize("prefix", ["../outside", "/tmp/abs", "ok\x00bad", "a/../../b"])
async def test_output_prefixes_reaching_outside_are_refused_before_any_fetch(tmp_path, http, prefix) -> None:
    graph = load_image("http://127.0.0.1:9/never-fetched.png")
    graph["9"]["inputs"]["filename_prefix"] = prefix
    with pytest.raises(InvalidRequest) as refused:
        await make_stager(tmp_path, http).stage("j", graph)
    assert refused.value.field == "prompt.9.inputs.filename_prefix"
    assert not (tmp_path / "input" / "j").exists()


async def test_url_is_downloaded(tmp_path, http, media_server) -> None:
    staged_graph, staged = await make_stager(tmp_path, http).stage("j", load_image(media_server.url("/png")))
    assert staged_graph["1"]["inputs"]["image"] == "j/1-image.png"
    assert_real_file(staged[0].path, PNG)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "HTTP 404"),
        ("/big", "larger than the limit"),
        ("/chunked-big", "larger than the limit"),
        ("/slow", "did not finish within"),
        ("/text", "unrecognised media type"),
    ],
)
async def test_download_failures_name_the_field(tmp_path, http, media_server, path, message) -> None:
    stager = make_stager(tmp_path, http, max_input_bytes=2048, download_timeout_s=0.3)
    with pytest.raises(InputStagingError) as caught:
        await stager.stage("j", load_image(media_server.url(path), node_id="7"))
    assert caught.value.field == "prompt.7.inputs.image"
    assert message in caught.value.message
    assert caught.value.status_code == 400


async def test_unreachable_host_is_a_staging_error(tmp_path, http) -> None:
    with pytest.raises(InputStagingError, match="download failed"):
        await make_stager(tmp_path, http).stage("j", load_image("http://127.0.0.1:9/x.png"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("this is not base64 at all, but it is long enough to be taken for it!!" * 2, "valid base64"),
        (base64.b64encode(b"plain text that is no picture " * 4).decode(), "unrecognised media type"),
        ("data:image/png;base64", "no ','"),
        ("ftp://example.com/x.png", "unsupported URL scheme"),
    ],
    ids=["bad-base64", "unknown-type", "bad-data-uri", "ftp"],
)
async def test_bad_inputs_name_the_field(tmp_path, http, value, message) -> None:
    with pytest.raises(InputStagingError) as caught:
        await make_stager(tmp_path, http).stage("j", load_image(value, node_id="12"))
    assert caught.value.field == "prompt.12.inputs.image"
    assert message in caught.value.message


async def test_base64_over_the_limit_is_refused_before_decoding(tmp_path, http) -> None:
    stager = make_stager(tmp_path, http, max_input_bytes=100)
    with pytest.raises(InputStagingError, match="larger than the limit"):
        await stager.stage("j", load_image(base64.b64encode(PNG * 10).decode()))


async def test_downloads_are_bounded_across_jobs(tmp_path, http, media_server) -> None:
    stager = make_stager(tmp_path, http, max_parallel_downloads=2)
    graph = {str(i): {"class_type": "LoadImage", "inputs": {"image": media_server.url("/png")}} for i in range(3)}
    await asyncio.gather(stager.stage("a", graph), stager.stage("b", graph))
    assert len(media_server.paths) == 6
    assert media_server.max_active == 2


async def test_other_schemes_go_to_the_remote_source(tmp_path, http) -> None:
    class Bucket:
        def __init__(self) -> None:
            self.asked: list[tuple[str, int | None]] = []

        def can_download(self, url: str) -> bool:
            return url.startswith("s3://")

        async def download(
            self, url: str, dest_dir: Path, *, credentials: Sequence[Credential] = (), max_bytes: int | None = None
        ) -> Path:
            self.asked.append((url, max_bytes))
            target = dest_dir / "object.bin"
            target.write_bytes(PNG)
            return target

    bucket = Bucket()
    stager = InputStager(JobSettings(max_input_bytes=4096), tmp_path / "input", http=http, remote=bucket)
    staged_graph, _ = await stager.stage("j", load_image("s3://bucket/key.png"))
    assert bucket.asked == [("s3://bucket/key.png", 4096)]
    assert staged_graph["1"]["inputs"]["image"] == "j/1-image.png"
    assert sorted(p.name for p in (tmp_path / "input" / "j").iterdir()) == ["1-image.png"]


async def test_a_list_of_images_becomes_a_folder(tmp_path, http) -> None:
    encoded = [base64.b64encode(PNG).decode(), base64.b64encode(JPEG).decode()]
    graph = {"3": {"class_type": "VHS_LoadImages", "inputs": {"directory": encoded}}}
    staged_graph, staged = await make_stager(tmp_path, http).stage("j", graph)
    assert staged_graph["3"]["inputs"]["directory"] == "j/3-directory"
    assert sorted(p.name for p in (tmp_path / "input" / "j" / "3-directory").iterdir()) == ["0000.png", "0001.jpg"]
    assert len(staged) == 2


async def test_one_failure_fails_the_job_and_names_its_own_field(tmp_path, http) -> None:
    graph = load_image(base64.b64encode(PNG).decode())
    graph["2"] = {"class_type": "LoadImage", "inputs": {"image": "x" * 80 + "!"}}
    with pytest.raises(InputStagingError) as caught:
        await make_stager(tmp_path, http).stage("j", graph)
    assert caught.value.field == "prompt.2.inputs.image"


@pytest.mark.parametrize("job_id", ["../escape", "a/b", ".", ""])
async def test_unsafe_job_ids_are_refused(tmp_path, http, job_id) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await make_stager(tmp_path, http).stage(job_id, load_image(base64.b64encode(PNG).decode()))
    assert caught.value.field == "id"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a" * 64, True), ("a" * 63, False), ("x.png", False), ("a" * 100 + ".png", False)],
)
def test_what_counts_as_base64(value: str, expected: bool) -> None:
    assert looks_like_base64(value) is expected


def test_decode_base64_reports_the_field() -> None:
    with pytest.raises(InputStagingError) as caught:
        decode_base64("@@@@", max_bytes=10, field="prompt.1.inputs.image")
    assert caught.value.field == "prompt.1.inputs.image"
