"""The simulator's HTTP answers against ComfyUI's recorded ones: POST /prompt errors, GET endpoints, uploads, /view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.simulator.simulator_support import (
    load_capture,
    png_bytes,
    running_simulator,
    without_tracebacks,
)

INVALID = load_capture("prompt_invalid.json")
GETS = load_capture("http_get_endpoints.json")
SERVER_TROUBLE = b"500 Internal Server Error\n\nServer got itself in trouble"
# Answers that depend on the machine or on files of the recording server rather than on the protocol.
MACHINE_SPECIFIC = ("/system_stats", "/models/checkpoints", "/extensions", "/internal", "/view_metadata/checkpoints?"
                    "filename=random", "/experiment", "/userdata", "/history?", "/")  # fmt: skip


async def test_prompt_answers_match_the_recording(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        status, _ = await server.upload("cap_test.png", png_bytes())
        assert status == 200
        for case in INVALID:
            request = case["request"]
            kwargs: dict[str, Any] = {"headers": request.get("headers")}
            if "json" in request:
                kwargs["json"] = request["json"]
            else:
                kwargs["data"] = request["raw_body"].encode()
            status, headers, body = await server.request("POST", "/prompt", **kwargs)
            recorded = case["response"]
            assert status == recorded["status"], case["label"]
            assert headers.get("Content-Type") == recorded["headers"].get("Content-Type"), case["label"]
            if "text" in recorded["body"]:
                assert body.decode() == recorded["body"]["text"], case["label"]
                continue
            answer, expected = json.loads(body), recorded["body"]["json"]
            if status == 200:
                assert set(answer) == {"prompt_id", "number", "node_errors"}
                answer, expected = answer["node_errors"], expected["node_errors"]
            assert without_tracebacks(answer) == without_tracebacks(expected), case["label"]


def recorded_gets() -> list[Any]:
    cases = []
    for case in GETS:
        request = case["request"]
        path = request["path"] + ("?" + "&".join(f"{k}={v}" for k, v in request["params"].items())
                                  if "params" in request else "")  # fmt: skip
        bare = path.removeprefix("/api")
        if (
            bare in ("", "/")
            or any(bare.startswith(p) for p in MACHINE_SPECIFIC if p != "/")
            or "Origin" in str(request)
        ):
            continue
        cases.append(pytest.param(case, path, id=case["label"]))
    return cases


@pytest.mark.parametrize(("case", "path"), recorded_gets())
async def test_get_endpoint_matches_the_recording(tmp_path: Path, case: dict[str, Any], path: str) -> None:
    async with running_simulator(tmp_path) as server:
        status, headers, body = await server.request(case["request"]["method"], path)
    recorded = case["response"]
    assert status == recorded["status"]
    assert headers.get("Content-Type") == recorded["headers"].get("Content-Type")
    if "json" in recorded["body"]:
        assert json.loads(body) == recorded["body"]["json"]
    elif "text" in recorded["body"]:
        assert body.decode() == recorded["body"]["text"]
    else:
        assert body == b""


async def test_system_stats_has_the_recorded_shape(tmp_path: Path) -> None:
    recorded = next(c for c in GETS if c["label"] == "GET /system_stats")["response"]["body"]["json"]
    async with running_simulator(tmp_path) as server:
        stats = json.loads((await server.request("GET", "/api/system_stats"))[2])
    assert list(stats["system"]) == list(recorded["system"])
    assert list(stats["devices"][0]) == list(recorded["devices"][0])
    assert stats["system"]["comfyui_version"] == "0.3.64"


async def test_origin_check_and_api_twins(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        host = server.base_url.removeprefix("http://")
        foreign = await server.request("GET", "/queue", headers={"Origin": "http://evil.example.com"})
        assert (foreign[0], foreign[2]) == (403, b"")
        same = await server.request("GET", "/queue", headers={"Origin": f"http://{host}"})
        assert same[0] == 200
        assert (await server.request("GET", "/api/internal/folder_paths"))[0] == 404  # a sub-app: no /api twin
        folders = json.loads((await server.request("GET", "/internal/folder_paths"))[2])
        assert folders["checkpoints"] == [
            str(tmp_path / "models" / "checkpoints"),
            str(tmp_path / "output" / "checkpoints"),
        ]
        assert (await server.request("GET", "/internal/files/bogus"))[0] == 400
        models = json.loads((await server.request("GET", "/api/models/checkpoints"))[2])
        assert models == ["sim-sd15.safetensors"]
        metadata = await server.request("GET", "/view_metadata/checkpoints?filename=sim-sd15.safetensors")
        assert metadata[0] == 200 and "note" in json.loads(metadata[2])


async def test_upload_naming_follows_the_recorded_sequence(tmp_path: Path) -> None:
    red, blue, green = png_bytes((255, 0, 0)), png_bytes((0, 0, 255)), png_bytes((0, 255, 0))
    steps: list[tuple[bytes, dict[str, str], str]] = [
        (red, {}, "cap_test.png"), (red, {}, "cap_test.png"), (blue, {}, "cap_test (1).png"),
        (green, {}, "cap_test (2).png"), (blue, {}, "cap_test (1).png"),
        (green, {"overwrite": "true"}, "cap_test.png"), (blue, {"overwrite": "false"}, "cap_test (1).png"),
    ]  # fmt: skip
    async with running_simulator(tmp_path) as server:
        for data, fields, expected in steps:
            status, body = await server.upload("cap_test.png", data, **fields)
            assert (status, json.loads(body)) == (200, {"name": expected, "subfolder": "", "type": "input"})
        assert (tmp_path / "input" / "cap_test.png").read_bytes() == green
        assert sorted(p.name for p in (tmp_path / "input").iterdir()) == [
            "cap_test (1).png", "cap_test (2).png", "cap_test.png"]  # fmt: skip


@pytest.mark.parametrize(
    ("filename", "fields", "status", "name"),
    [
        ("x.png", {"subfolder": "capsub/deeper"}, 200, "x.png"),
        ("x.png", {"type": "temp"}, 200, "x.png"),
        ("x.png", {"type": "bogus"}, 500, None),
        ("x.png", {"subfolder": "../.."}, 400, None),
        ("x.png", {"subfolder": "/tmp"}, 400, None),
        ("../evil.png", {}, 400, None),
        ("/abs.png", {}, 200, "abs.png"),
        ("sub/x.png", {}, 500, None),
        ("my pic é.png", {}, 200, "my pic é.png"),
        ("", {}, 500, None),
    ],
)
async def test_upload_rejections(tmp_path: Path, filename: str, fields: dict[str, str], status: int,
                                 name: str | None) -> None:  # fmt: skip
    async with running_simulator(tmp_path) as server:
        got_status, body = await server.upload(filename, png_bytes(), **fields)
    assert got_status == status
    if name is not None:
        assert json.loads(body)["name"] == name
    elif status == 500:
        assert body == SERVER_TROUBLE
    else:
        assert body == b""


async def test_mask_upload_applies_the_alpha_and_ignores_bad_references(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        await server.upload("base.png", png_bytes((10, 20, 30)))
        reference = json.dumps({"filename": "base.png", "type": "input", "subfolder": ""})
        status, body = await server.upload("mask.png", png_bytes((0, 0, 0)), "/upload/mask", original_ref=reference)
        assert (status, json.loads(body)["name"]) == (200, "mask.png")
        assert (tmp_path / "input" / "mask.png").exists()
        bad = json.dumps({"filename": "../base.png", "type": "input"})
        status, body = await server.upload("mask2.png", png_bytes((1, 0, 0)), "/upload/mask", original_ref=bad)
        assert (status, json.loads(body)["name"]) == (200, "mask2.png")
        assert not (tmp_path / "input" / "mask2.png").exists()


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("filename=a.png&type=input", 200),
        ("filename=a.png [input]", 200),
        ("filename=a.png&subfolder=&type=input", 200),
        ("type=output", 404),
        ("filename=nope.png", 404),
        ("filename=a.png&subfolder=nope&type=input", 404),
        ("filename=", 400),
        ("filename=../main.py", 400),
        ("filename=..%5Cmain.py", 400),
        ("filename=/etc/passwd", 400),
        ("filename=a..b.png", 400),
        ("filename=%2e%2e%2fx.png", 400),
        ("filename=a.png&type=bogus", 400),
        ("filename=a.png&subfolder=..&type=input", 403),
        ("filename=passwd&subfolder=/etc", 403),
        ("filename=a.png&subfolder=../output&type=input", 403),
        ("filename=a.png [bogus]", 404),
        ("filename=sub/b.png&type=input", 404),
        ("filename=sub&type=input", 404),
    ],
)
async def test_view_answers(tmp_path: Path, query: str, status: int) -> None:
    async with running_simulator(tmp_path) as server:
        await server.upload("a.png", png_bytes())
        await server.upload("b.png", png_bytes(), subfolder="sub")
        got_status, headers, body = await server.request("GET", "/view?" + query)
    assert got_status == status
    if status == 200:
        assert (headers["Content-Type"], headers["Content-Disposition"]) == ("image/png", 'filename="a.png"')
        assert body == png_bytes()
    else:
        assert body == b""


async def test_view_variants_range_and_head(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        await server.upload("a.png", png_bytes())
        base = "/view?filename=a.png&type=input"
        variants = {"&preview=webp;90": "image/webp", "&preview=jpeg;50": "image/jpeg", "&preview=png": "image/webp",
                    "&preview=jpeg&channel=a": "image/webp", "&channel=rgb": "image/png", "&channel=a": "image/png",
                    "&channel=bogus": "image/png"}  # fmt: skip
        for suffix, content_type in variants.items():
            status, headers, _ = await server.request("GET", base + suffix)
            assert (status, headers["Content-Type"]) == (200, content_type), suffix
        status, headers, body = await server.request("GET", base, headers={"Range": "bytes=0-9"})
        assert (status, headers["Content-Range"], body) == (206, f"bytes 0-9/{len(png_bytes())}", png_bytes()[:10])
        status, headers, body = await server.request("HEAD", base)
        assert (status, headers["Content-Length"], body) == (200, str(len(png_bytes())), b"")
        assert "etag" in {k.lower() for k in headers} and headers["Accept-Ranges"] == "bytes"


async def test_malformed_bodies_give_the_text_500(tmp_path: Path) -> None:
    async with running_simulator(tmp_path) as server:
        for path, data in (("/free", b""), ("/queue", b"nope"), ("/history", b"{"), ("/prompt", b"")):
            status, headers, body = await server.request("POST", path, data=data)
            assert (status, headers["Content-Type"], body) == (500, "text/plain; charset=utf-8", SERVER_TROUBLE)
        for path, payload in (("/free", {}), ("/free", {"free_memory": True}), ("/interrupt", {}),
                              ("/queue", {"delete": ["nope"]}), ("/history", {"clear": True})):  # fmt: skip
            status, _, body = await server.request("POST", path, json=payload)
            assert (status, body) == (200, b"")
        assert (await server.request("POST", "/interrupt"))[:3:2] == (200, b"")
