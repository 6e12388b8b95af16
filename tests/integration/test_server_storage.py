"""The real server with real storage servers on loopback (moto S3, Azurite, the Hugging Face Hub stand-in, the HTTP
file server): media inputs downloaded through storage with request credentials, synchronous uploads whose URLs are
read back, failed uploads reported (and returned inline with fallback_to_base64), and no credential in any response
or server log line."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.integration.server import (
    ServerProcess,
    decode_image,
    image_graph,
    load_image_graph,
    rgb,
    sampler_graph,
    start_server,
    unkept_files,
)
from tests.integration.storage_world import PROVIDERS, SECRETS, StorageWorld, storage_world

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 60.0
QUADRANTS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 10))  # top-left, top-right, bottom-left, bottom-right


def quadrant_png(size: int = 16) -> bytes:
    image = Image.new("RGB", (size, size))
    half = size // 2
    for index, colour in enumerate(QUADRANTS):
        x, y = (index % 2) * half, (index // 2) * half
        image.paste(colour, (x, y, x + half, y + half))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


INPUT_PNG = quadrant_png()


def assert_inverted_quadrants(image: Image.Image) -> None:
    """The output of LoadImage(INPUT_PNG) -> ImageInvert: proves the downloaded bytes reached the job."""
    half = image.width // 2
    for index, (red, green, blue) in enumerate(QUADRANTS):
        x, y = (index % 2) * half + 2, (index // 2) * half + 2
        seen = image.getpixel((x, y))
        expected = (255 - red, 255 - green, 255 - blue)
        # ComfyUI works in floats (x/255, 1 - x, *255 truncated): a channel may come back one lower.
        assert all(0 <= want - got <= 1 for got, want in zip(seen, expected, strict=True)), (seen, expected)


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"a credential leaked: {text[:200]!r}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageWorld]:
    with storage_world(tmp_path_factory.mktemp("storage"), hf_inputs={"in.png": INPUT_PNG}) as started:
        yield started


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, world: StorageWorld) -> Iterator[ServerProcess]:
    api = start_server(tmp_path_factory.mktemp("api"), env={**world.server_env(), "LOG_LEVEL": "DEBUG"})
    try:
        yield api
    finally:
        api.stop()
        assert_no_secrets(api.logs())


async def post_prompt(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S) as client:
        return await client.post(server.url("/prompt"), json=body)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_input_downloaded_and_output_uploaded(server: ServerProcess, world: StorageWorld, provider: str) -> None:
    input_url = world.put_input(provider, "in.png", INPUT_PNG)
    field, options = world.target(provider)
    job_id = f"roundtrip-{provider}"
    body = {"prompt": load_image_graph(input_url), "id": job_id, field: options, "credentials": world.credentials()}

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text
    answer = response.json()
    filename = answer["filenames"][0]
    expected_url = world.expected_url(provider, f"renders/{job_id}/{filename}")
    assert answer["images"] == [expected_url]
    assert answer["outputs"][0]["url"] == expected_url
    assert "error" not in answer["outputs"][0] and "error" not in answer
    uploaded = world.read(expected_url)
    assert len(uploaded) == answer["outputs"][0]["size_bytes"]
    assert_inverted_quadrants(Image.open(io.BytesIO(uploaded)).convert("RGB"))
    assert answer["stats"]["upload_time"] > 0
    assert input_url not in response.text  # the graph that comes back names the staged file
    assert_no_secrets(response.text, server.logs())


async def test_flat_key_style_and_presigned_s3_url(server: ServerProcess, world: StorageWorld) -> None:
    field, options = world.target("s3", key_style="flat", presign_expires_s=600)
    response = await post_prompt(server, {"prompt": image_graph(0x102030), "id": "flat-presigned", field: options})

    assert response.status_code == 200, response.text
    url = response.json()["images"][0]
    filename = response.json()["filenames"][0]
    assert url.startswith(f"{world.s3.endpoint_url}/{world.bucket}/renders/{filename}?")
    assert "X-Amz-Signature=" in url
    async with httpx.AsyncClient(timeout=10) as client:
        fetched = await client.get(url)
    assert fetched.status_code == 200
    assert Image.open(io.BytesIO(fetched.content)).convert("RGB").getpixel((1, 1)) == rgb(0x102030)
    assert world.read(f"s3://{world.bucket}/renders/{filename}") == fetched.content


async def test_uploads_of_several_outputs_run_together(server: ServerProcess, world: StorageWorld) -> None:
    graph = image_graph(0x445566)
    graph["1"]["inputs"]["batch_size"] = 5
    field, options = world.target("azure")
    response = await post_prompt(server, {"prompt": graph, "id": "batch-of-five", field: options})

    assert response.status_code == 200, response.text
    answer = response.json()
    assert len(answer["images"]) == 5 and len(set(answer["images"])) == 5
    for url, info in zip(answer["images"], answer["outputs"], strict=True):
        assert info["url"] == url
        image = Image.open(io.BytesIO(world.read(url))).convert("RGB")
        assert image.getpixel((0, 0)) == rgb(0x445566)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_failed_upload_is_reported_not_returned_as_a_url(
    server: ServerProcess, world: StorageWorld, provider: str
) -> None:
    field, options = world.broken_target(provider)
    body = {"prompt": image_graph(0x00AA00), "id": f"broken-{provider}", field: options}
    body["credentials"] = world.credentials()

    response = await post_prompt(server, body)

    assert response.status_code == 502, response.text
    answer = response.json()
    assert answer["error"]["type"] == "storage_failed"
    assert answer["error"]["field"] == field
    assert answer["images"] == [""]
    output = answer["outputs"][0]
    assert "url" not in output
    assert output["error"]
    assert answer["error"]["details"]["failed"] == [{"filename": output["filename"], "error": output["error"]}]
    assert_no_secrets(response.text, server.logs())


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_failed_upload_falls_back_to_base64(server: ServerProcess, world: StorageWorld, provider: str) -> None:
    field, options = world.broken_target(provider)
    body = {"prompt": image_graph(0xAA0000), field: options, "fallback_to_base64": True}
    body["credentials"] = world.credentials()

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert "error" not in answer
    assert decode_image(answer["images"][0]).getpixel((2, 2)) == rgb(0xAA0000)
    output = answer["outputs"][0]
    assert output["error"] and "url" not in output
    assert "fallback_to_base64" in output["note"]
    assert output["size_bytes"] == len(base64.b64decode(answer["images"][0]))


async def test_every_failed_output_is_listed(server: ServerProcess, world: StorageWorld) -> None:
    graph = image_graph(0x0000AA)
    graph["1"]["inputs"]["batch_size"] = 2
    field, options = world.target("http")
    credentials = [c for c in world.credentials() if c["auth"]["type"] != "bearer"]  # no token: every PUT is 401

    response = await post_prompt(server, {"prompt": graph, field: options, "credentials": credentials})

    assert response.status_code == 502
    answer = response.json()
    assert answer["images"] == ["", ""]
    assert all("401" in output["error"] for output in answer["outputs"])
    assert "2 of 2 output(s)" in answer["error"]["message"]


async def test_input_download_failure_names_the_field_without_leaking(
    server: ServerProcess, world: StorageWorld
) -> None:
    url = f"{world.files.url}/files/inputs/in.png?sig=query-secret-value-1234"
    body = {"prompt": load_image_graph(url), "credentials": [{"url_pattern": "https://elsewhere/", "auth": {}}]}
    bad = await post_prompt(server, body)
    assert bad.status_code == 400
    assert bad.json()["error"]["field"] == "credentials[0].auth.type"

    response = await post_prompt(server, {"prompt": load_image_graph(url)})  # no token for the file server

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == "prompt.1.inputs.image"
    assert "401" in error["message"]
    assert "query-secret-value-1234" not in response.text
    assert "query-secret-value-1234" not in server.logs()


async def test_credentials_never_come_back(server: ServerProcess, world: StorageWorld) -> None:
    input_url = world.put_input("http", "again.png", INPUT_PNG)
    body = {"prompt": load_image_graph(input_url), "credentials": world.credentials()}

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text
    assert_inverted_quadrants(decode_image(response.json()["images"][0]))
    assert "credentials" not in response.text
    assert_no_secrets(response.text, server.logs())


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"s3": {"prefix": "x/"}}, "s3.bucket"),
        ({"s3": {"bucket": "b-ok", "buckett": "typo"}}, "s3.buckett"),
        ({"s3": {"bucket": "b-ok", "async": "yes"}}, "s3.async"),
        ({"s3": {"bucket": "b-ok", "key_style": "nested"}}, "s3.key_style"),
        ({"s3": {"bucket": "b-ok", "presign_expires_s": 0}}, "s3.presign_expires_s"),
        ({"azure_blob_upload": {"container": "x"}}, "azure_blob_upload.container"),
        ({"hf_upload": {"repo": "no-slash"}}, "hf_upload.repo"),
        ({"hf_upload": {"repo": "a/b", "repo_type": "zoo"}}, "hf_upload.repo_type"),
        ({"http_upload": {"url_prefix": "ftp://host/x"}}, "http_upload.url_prefix"),
        ({"s3": {"bucket": "b-ok"}, "http_upload": {"url_prefix": "http://h/x"}}, "http_upload,s3"),
        ({"convert_output": {"format": "tiff"}}, "convert_output.format"),
        ({"convert_output": {"format": "jpeg", "options": {"quality": 500}}}, "convert_output.options.quality"),
        ({"convert_output": {"format": "webp", "options": {"lossles": True}}}, "convert_output.options.lossles"),
        ({"convert_output": {"format": "png", "extra": 1}}, "convert_output.extra"),
        ({"credentials": [{"url_pattern": "s3://b/", "auth": {"type": "s3"}}]}, "credentials[0].auth.access_key_id"),
        ({"credentials": ["nope"]}, "credentials[0]"),
    ],
)
async def test_storage_fields_are_validated_at_the_edge(
    server: ServerProcess, extra: dict[str, Any], field: str
) -> None:
    response = await post_prompt(server, {"prompt": image_graph(), **extra})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field
    if "," in field:
        assert all(name in error["message"] for name in field.split(","))


# ---- convert_output ---------------------------------------------------------------------------------------------


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def mean_abs_difference(first: Image.Image, second: Image.Image) -> float:
    return float(np.abs(pixels(first) - pixels(second)).mean())


async def noise_png(server: ServerProcess, seed: int) -> Image.Image:
    """The unconverted output of the deterministic noise graph (the reference the conversions are compared to)."""
    response = await post_prompt(server, {"prompt": sampler_graph(1, seed=seed, size=128)})
    assert response.status_code == 200, response.text
    return decode_image(response.json()["images"][0])


async def test_jpeg_quality_changes_the_returned_file(server: ServerProcess) -> None:
    original = await noise_png(server, seed=7)
    returned: dict[str, tuple[dict[str, Any], bytes]] = {}
    settings = {"low": {"quality": 5}, "high": {"quality": 95, "chroma_subsampling": "4:4:4"}}
    for name, options in settings.items():
        body = {"prompt": sampler_graph(1, seed=7, size=128), "convert_output": {"format": "jpeg", "options": options}}
        response = await post_prompt(server, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        returned[name] = (answer["outputs"][0], base64.b64decode(answer["images"][0]))

    for info, data in returned.values():
        assert info["content_type"] == "image/jpeg" and info["filename"].endswith(".jpg")
        assert info["size_bytes"] == len(data)
        assert Image.open(io.BytesIO(data)).format == "JPEG"
    low, high = (Image.open(io.BytesIO(returned[name][1])) for name in ("low", "high"))
    assert len(returned["low"][1]) * 3 < len(returned["high"][1])
    # Per-pixel noise is a worst case for JPEG; quality 95 without chroma subsampling still stays close.
    assert mean_abs_difference(high, original) < 4
    assert mean_abs_difference(low, original) > 8


async def test_lossless_webp_round_trips_through_an_upload(server: ServerProcess, world: StorageWorld) -> None:
    original = await noise_png(server, seed=11)
    field, options = world.target("http")
    body = {"prompt": sampler_graph(1, seed=11, size=128), field: options, "credentials": world.credentials()}
    body["convert_output"] = {"format": "webp", "options": {"lossless": True}}

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text
    info = response.json()["outputs"][0]
    assert info["filename"].endswith(".webp") and info["content_type"] == "image/webp"
    uploaded = Image.open(io.BytesIO(world.read(info["url"])))
    assert uploaded.format == "WEBP"
    assert np.array_equal(pixels(uploaded), pixels(original))


async def test_lossy_webp_upload_and_audio_left_as_it_is(server: ServerProcess, world: StorageWorld) -> None:
    graph = sampler_graph(1, seed=3, size=128)
    graph["20"] = {"class_type": "EmptyAudio", "inputs": {"duration": 0.5, "sample_rate": 44100, "channels": 1}}
    graph["21"] = {"class_type": "SaveAudio", "inputs": {"audio": ["20", 0], "filename_prefix": "sound"}}
    field, options = world.target("s3")
    body = {"prompt": graph, field: options, "convert_output": {"format": "webp", "options": {"quality": 30}}}

    response = await post_prompt(server, body)

    assert response.status_code == 200, response.text
    outputs = {info["kind"]: info for info in response.json()["outputs"]}
    image, audio = outputs["image"], outputs["audio"]
    assert Image.open(io.BytesIO(world.read(image["url"]))).format == "WEBP"
    assert "note" not in image
    assert audio["filename"].endswith(".flac") and audio["content_type"] == "audio/flac"
    assert "left as is" in audio["note"]
    assert world.read(audio["url"]).startswith(b"fLaC")


async def test_no_files_left_behind(server: ServerProcess) -> None:
    """Runs last: every job above (uploaded, failed, converted, fallen back) has cleaned up after itself."""
    assert await unkept_files(server) == []
