"""POST /upload/image and /upload/mask naming and rejections; GET /view variants and every traversal rejection."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.contract import versions
from tests.contract.conftest import StartTarget
from tests.contract.graphs import make_png, unique_token
from tests.contract.harness import HTTP_TIMEOUT_S, Target, open_ws, upload

RED, BLUE, GREEN = make_png((255, 0, 0)), make_png((0, 0, 255)), make_png((0, 255, 0))


def assert_empty(response: httpx.Response, status: int) -> None:
    assert (response.status_code, response.content) == (status, b""), response.text[:200]


def on_disk(root: Path | None, *parts: str) -> Path | None:
    return root.joinpath(*parts) if root is not None else None


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_upload_naming_reuses_by_hash_and_numbers_new_content(target: Target, http: httpx.AsyncClient) -> None:
    stem = "contract_up_" + unique_token()
    names = []
    for data, form in [(RED, {}), (RED, {}), (BLUE, {}), (GREEN, {}), (BLUE, {}), (GREEN, {"overwrite": "true"})]:
        response = await upload(http, f"{stem}.png", data, **form)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        body = response.json()
        assert set(body) == {"name", "subfolder", "type"} and body["subfolder"] == "" and body["type"] == "input"
        names.append(body["name"])
    assert names == [f"{stem}.png", f"{stem}.png", f"{stem} (1).png", f"{stem} (2).png", f"{stem} (1).png",
                     f"{stem}.png"]  # fmt: skip
    served = await http.get("/view", params={"filename": f"{stem}.png", "type": "input"})
    assert served.content == GREEN, "overwrite=true replaced the first file"
    path = on_disk(target.input_dir, f"{stem}.png")
    if path is not None:
        assert path.read_bytes() == GREEN
        assert sorted(p.name for p in path.parent.glob(f"{stem}*")) == [f"{stem} (1).png", f"{stem} (2).png",
                                                                         f"{stem}.png"]  # fmt: skip


async def test_overwrite_other_than_true_does_not_overwrite(http: httpx.AsyncClient) -> None:
    stem = "contract_ow_" + unique_token()
    await upload(http, f"{stem}.png", RED)
    for flag in ("false", "yes", "0"):
        response = await upload(http, f"{stem}.png", BLUE, overwrite=flag)
        assert response.json()["name"] == f"{stem} (1).png", flag
    assert (await upload(http, f"{stem}.png", GREEN, overwrite="1")).json()["name"] == f"{stem}.png"


async def test_upload_subfolder_and_type(target: Target, http: httpx.AsyncClient) -> None:
    stem = "contract_sub_" + unique_token()
    sub = await upload(http, f"{stem}.png", RED, subfolder=f"{stem}/deeper")
    assert sub.json() == {"name": f"{stem}.png", "subfolder": f"{stem}/deeper", "type": "input"}
    view = await http.get("/view", params={"filename": f"{stem}.png", "subfolder": f"{stem}/deeper", "type": "input"})
    assert view.content == RED
    for kind, root in (("temp", target.temp_dir), ("output", target.output_dir)):
        response = await upload(http, f"{stem}.png", BLUE, type=kind)
        assert response.json() == {"name": f"{stem}.png", "subfolder": "", "type": kind}
        assert (await http.get("/view", params={"filename": f"{stem}.png", "type": kind})).content == BLUE
        path = on_disk(root, f"{stem}.png")
        if path is not None:
            assert path.read_bytes() == BLUE


async def test_any_bytes_and_names_are_accepted(http: httpx.AsyncClient) -> None:
    stem = "contract_any_" + unique_token()
    for name in (f"{stem}.wav", f"{stem}_noext", f"{stem} pic é.png"):
        response = await upload(http, name, b"not really media")
        assert response.status_code == 200 and response.json()["name"] == name
    stored_abs = await upload(http, f"/{stem}_abs.png", RED)
    assert stored_abs.json()["name"] == f"{stem}_abs.png", "a leading slash is dropped"


@pytest.mark.parametrize(
    ("filename", "form"),
    [("ok.png", {"subfolder": "../.."}), ("ok.png", {"subfolder": "/tmp"}), ("../evil.png", {})],
    ids=["subfolder_dotdot", "subfolder_absolute", "filename_dotdot"],
)
async def test_upload_traversal_is_400_empty(http: httpx.AsyncClient, filename: str, form: dict[str, str]) -> None:
    assert_empty(await upload(http, filename, RED, **form), 400)


async def test_upload_without_image_part_is_400_empty(http: httpx.AsyncClient) -> None:
    assert_empty(await upload(http, "x.png", RED, field_name="file"), 400)
    assert_empty(await http.post("/upload/image", json={"image": "x"}), 400)


@pytest.mark.parametrize(
    ("filename", "form"),
    [("ok.png", {"type": "bogus"}), ("", {}), ("contract-no-such-dir/x.png", {})],
    ids=["unknown_type", "empty_filename", "missing_directory_in_name"],
)
async def test_upload_server_trouble_cases_are_500(
    http: httpx.AsyncClient, filename: str, form: dict[str, str]
) -> None:
    response = await upload(http, filename, RED, **form)
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_max_upload_size_flag_limits_request_bodies(start_extra_target: StartTarget) -> None:
    limited = start_extra_target(["--max-upload-size", "0.01"])
    async with httpx.AsyncClient(base_url=limited.base_url, timeout=HTTP_TIMEOUT_S) as http:
        features = (await http.get("/features")).json()
        # /features and the ws flags report the unrounded product; the enforced limit is rounded.
        assert features["max_upload_size"] == 0.01 * 1024 * 1024
        small = await upload(http, "contract_small.png", RED)
        assert small.status_code == 200
        too_big = await upload(http, "contract_big.png", b"\x00" * 20_000)
        assert too_big.status_code == 413
        assert too_big.headers["content-type"].startswith("text/plain")
        assert too_big.text.startswith("Maximum request body size 10486 exceeded"), too_big.text
        async with open_ws(limited, feature_flags=True) as ws:
            assert ws.connect_frames[1]["data"]["max_upload_size"] == 0.01 * 1024 * 1024


async def test_upload_mask_applies_alpha_to_the_original(http: httpx.AsyncClient) -> None:
    stem = "contract_mask_" + unique_token()
    original = (await upload(http, f"{stem}.png", make_png((10, 200, 30), (8, 8)))).json()
    mask = make_png((0, 0, 0), (8, 8), alpha=77)
    ref = json.dumps({"filename": original["name"], "type": "input", "subfolder": ""})
    response = await http.post("/upload/mask", files={"image": (f"{stem}_mask.png", mask, "image/png")},
                               data={"original_ref": ref})  # fmt: skip
    assert response.status_code == 200
    assert response.json() == {"name": f"{stem}_mask.png", "subfolder": "", "type": "input"}
    result = decoded((await http.get("/view", params={"filename": f"{stem}_mask.png", "type": "input"})).content)
    assert result.mode == "RGBA"
    assert result.getpixel((3, 3)) == (10, 200, 30, 77)


# ------------------------------------------------------------------------------------------------ /view


@pytest.fixture
async def viewable(http: httpx.AsyncClient) -> tuple[str, str]:
    """An RGBA PNG uploaded as output into a subfolder: (filename, subfolder)."""
    stem = "contract_view_" + unique_token()
    body = (await upload(http, f"{stem}.png", make_png((200, 100, 50), (16, 12), alpha=128), type="output",
                         subfolder=stem)).json()  # fmt: skip
    return body["name"], body["subfolder"]


async def test_view_raw_file_headers_range_and_head(http: httpx.AsyncClient, viewable: tuple[str, str]) -> None:
    name, sub = viewable
    params = {"filename": name, "subfolder": sub}
    full = await http.get("/view", params=params)
    assert full.status_code == 200
    assert full.headers["content-type"] == "image/png"
    assert full.headers["content-disposition"] == f'filename="{name}"'
    assert full.headers["accept-ranges"] == "bytes"
    assert "etag" in full.headers and "last-modified" in full.headers
    assert (await http.get("/view", params={**params, "type": "output"})).content == full.content
    ranged = await http.get("/view", params=params, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206
    assert ranged.content == full.content[:10]
    assert ranged.headers["content-range"] == f"bytes 0-9/{len(full.content)}"
    head = await http.head("/view", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(full.content))


@pytest.mark.parametrize(
    ("extension", "content_type"),
    [
        ("html", "application/octet-stream"),
        ("css", "application/octet-stream"),
        # ComfyUI 0.3.64 registers .js as "application/javascript; charset=utf-8", which escapes its forced-download
        # list; since ~0.28 every type that can run script is an attachment.
        ("js", "application/javascript; charset=utf-8"),
    ],
)
async def test_view_content_type_of_web_files(
    http: httpx.AsyncClient, target: Target, extension: str, content_type: str
) -> None:
    name = (await upload(http, f"contract_web_{unique_token()}.{extension}", b"<b>x</b>")).json()["name"]
    response = await http.get("/view", params={"filename": name, "type": "input"})
    assert response.status_code == 200 and response.content == b"<b>x</b>"
    if target.at_least(versions.SAFE_VIEW_HEADERS):
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
    else:
        assert response.headers["content-type"] == content_type


@pytest.mark.parametrize(
    ("extension", "content_type"),
    [("txt", "text/plain"), ("json", "application/json"), ("mp3", "audio/mpeg"), ("mp4", "video/mp4"),
     ("webp", "image/webp"), ("jpg", "image/jpeg"), ("gif", "image/gif"), ("svg", "image/svg+xml"),
     ("latent", "application/octet-stream"), ("", "application/octet-stream")],
)  # fmt: skip
async def test_view_content_type_follows_the_extension(
    http: httpx.AsyncClient, target: Target, extension: str, content_type: str
) -> None:
    filename = f"contract_ext_{unique_token()}" + (f".{extension}" if extension else "")
    name = (await upload(http, filename, b"\x00\x01 payload")).json()["name"]
    response = await http.get("/view", params={"filename": name, "type": "input"})
    assert response.status_code == 200 and response.content == b"\x00\x01 payload"
    if extension == "svg" and target.at_least(versions.SAFE_VIEW_HEADERS):
        # an SVG can run script: an attachment, unless the browser fetches it as an image
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        as_image = await http.get(
            "/view", params={"filename": name, "type": "input"}, headers={"Sec-Fetch-Dest": "image"}
        )
        assert as_image.headers["content-type"] == "image/svg+xml"
        return
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"] == f'filename="{name}"'
    if target.at_least(versions.SAFE_VIEW_HEADERS):
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_view_annotation_sets_the_type(http: httpx.AsyncClient) -> None:
    name = (await upload(http, f"contract_ann_{unique_token()}.png", RED)).json()["name"]
    annotated = await http.get("/view", params={"filename": f"{name} [input]"})
    assert annotated.status_code == 200 and annotated.content == RED
    assert annotated.headers["content-disposition"] == f'filename="{name}"'
    assert_empty(await http.get("/view", params={"filename": f"{name} [bogus]"}), 404)


@pytest.mark.parametrize(
    ("extra", "content_type", "image_format", "mode"),
    [
        ({"preview": "webp;90"}, "image/webp", "WEBP", None),
        ({"preview": "jpeg;50"}, "image/jpeg", "JPEG", "RGB"),
        ({"preview": "png"}, "image/webp", "WEBP", None),
        ({"preview": "jpeg", "channel": "a"}, "image/webp", "WEBP", None),
        ({"channel": "rgb"}, "image/png", "PNG", "RGB"),
        ({"channel": "a"}, "image/png", "PNG", "RGBA"),
    ],
    ids=["webp", "jpeg", "other_format_webp", "alpha_forces_webp", "channel_rgb", "channel_a"],
)  # fmt: skip
async def test_view_preview_and_channel(
    http: httpx.AsyncClient,
    viewable: tuple[str, str],
    extra: dict[str, str],
    content_type: str,
    image_format: str,
    mode: str | None,
) -> None:
    name, sub = viewable
    response = await http.get("/view", params={"filename": name, "subfolder": sub, **extra})
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"] == f'filename="{name}"'
    image = decoded(response.content)
    assert (image.format, image.size) == (image_format, (16, 12))
    if mode is not None:
        assert image.mode == mode
    if extra == {"channel": "a"}:
        assert image.getpixel((0, 0)) == (0, 0, 0, 128), "the alpha channel alone, as RGBA"


async def test_view_unknown_channel_serves_the_raw_file(http: httpx.AsyncClient, viewable: tuple[str, str]) -> None:
    name, sub = viewable
    raw = await http.get("/view", params={"filename": name, "subfolder": sub})
    bogus = await http.get("/view", params={"filename": name, "subfolder": sub, "channel": "bogus"})
    assert bogus.content == raw.content


async def test_view_missing_things_are_404_empty(http: httpx.AsyncClient, viewable: tuple[str, str]) -> None:
    name, sub = viewable
    for params in (
        {"filename": "contract-nope.png"},
        {"filename": name, "subfolder": "contract-nope"},
        {"type": "output"},
        {"filename": f"{sub}/{name}"},  # the directory part of filename is dropped
        {"filename": sub},  # a directory
    ):
        assert_empty(await http.get("/view", params=params), 404)


@pytest.mark.parametrize(
    ("raw_query", "status"),
    [
        ("filename=", 400),
        ("filename=../main.py", 400),
        ("filename=..%5Cmain.py", 400),
        ("filename=/etc/passwd", 400),
        ("filename=a..b.png", 400),
        ("filename=%2e%2e%2fmain.py", 400),
        ("filename=x.png&type=bogus", 400),
        ("filename=main.py&subfolder=..", 403),
        ("filename=passwd&subfolder=/etc", 403),
        ("filename=x.png&subfolder=../input", 403),
    ],
    ids=["empty", "dotdot", "dotdot_backslash", "absolute", "dots_inside", "encoded_dotdot", "bad_type",
         "subfolder_dotdot", "subfolder_absolute", "subfolder_sibling"],
)  # fmt: skip
async def test_view_traversal_rejections(http: httpx.AsyncClient, raw_query: str, status: int) -> None:
    assert_empty(await http.get("/view?" + raw_query), status)
