"""What model-free output nodes report and write, SaveImageWebsocket's binary frames, sampler preview frames."""

from __future__ import annotations

import io
import random
import re
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.contract import versions
from tests.contract.conftest import StartTarget
from tests.contract.graphs import color_for, empty_image, files_in, make_output_graph, make_txt2img_graph, unique_token
from tests.contract.harness import (
    MODEL_RUN_TIMEOUT_S,
    Target,
    binary_header,
    first_checkpoint,
    frame_types,
    open_ws,
    queue_prompt,
    split_metadata_frame,
    wait_history,
    wait_idle,
)

PREVIEW_METADATA_KEYS = {"node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id", "image_type"}


async def run_for_outputs(http: httpx.AsyncClient, graph: dict[str, Any], **fields: Any) -> dict[str, Any]:
    entry = await wait_history(http, await queue_prompt(http, graph, **fields))
    assert entry["status"]["status_str"] == "success", entry["status"]
    return dict(entry["outputs"])


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_save_image_subfolder_counter_and_png_metadata(target: Target, http: httpx.AsyncClient) -> None:
    token = unique_token()
    prefix = f"contract_{token}/pic"
    workflow = {"nodes": [], "note": "contract"}
    first = await run_for_outputs(http, make_output_graph("SaveImage", token, filename_prefix=prefix),
                                  extra_data={"extra_pnginfo": {"workflow": workflow}})  # fmt: skip
    assert first == {"2": {"images": [{"filename": "pic_00001_.png", "subfolder": f"contract_{token}",
                                       "type": "output"}]}}  # fmt: skip
    second_graph = make_output_graph("SaveImage", token + "b", filename_prefix=prefix)
    second = await run_for_outputs(http, second_graph)
    assert second["2"]["images"][0]["filename"] == "pic_00002_.png", "the counter is per prefix"
    view = await http.get("/view", params={"filename": "pic_00001_.png", "subfolder": f"contract_{token}"})
    image = decoded(view.content)
    assert image.size == (32, 24)
    assert set(image.info) >= {"prompt", "workflow"}
    assert '"class_type": "SaveImage"' in image.info["prompt"]
    assert '"note": "contract"' in image.info["workflow"]
    if target.output_dir is not None:
        assert {f"contract_{token}/pic_00001_.png", f"contract_{token}/pic_00002_.png"} <= files_in(target.output_dir)


async def test_preview_image_goes_to_temp(target: Target, http: httpx.AsyncClient) -> None:
    outputs = await run_for_outputs(http, make_output_graph("PreviewImage", unique_token()))
    [image] = outputs["2"]["images"]
    assert re.fullmatch(r"ComfyUI_temp_[a-z]{5}_00001_\.png", image["filename"]), image
    assert (image["subfolder"], image["type"]) == ("", "temp")
    view = await http.get("/view", params={"filename": image["filename"], "type": "temp"})
    assert view.status_code == 200 and decoded(view.content).size == (32, 24)
    if target.temp_dir is not None:
        assert (target.temp_dir / image["filename"]).is_file()


async def test_animated_webp_and_png_share_the_prefix_counter(http: httpx.AsyncClient) -> None:
    token = unique_token()
    prefix = f"contract_anim_{token}"
    graph = {
        "1": empty_image(32, 32, color_for(token)),
        "4": empty_image(32, 32, color_for(token + "x")),
        "5": {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["4", 0]}},
        "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["5", 0], "filename_prefix": prefix, "fps": 6.0,
                                                            "lossless": True, "quality": 80, "method": "default"}},
        "3": {"class_type": "SaveAnimatedPNG", "inputs": {"images": ["5", 0], "filename_prefix": prefix, "fps": 6.0,
                                                           "compress_level": 4}},
    }  # fmt: skip
    outputs = await run_for_outputs(http, graph)
    assert set(outputs) == {"2", "3"}
    names = []
    for node_id, extension, content_type in (("2", ".webp", "image/webp"), ("3", ".png", "image/png")):
        assert set(outputs[node_id]) == {"images", "animated"}
        assert outputs[node_id]["animated"] == [True]
        [image] = outputs[node_id]["images"]
        assert image["filename"].endswith(extension) and (image["subfolder"], image["type"]) == ("", "output")
        names.append(image["filename"])
        view = await http.get("/view", params={"filename": image["filename"]})
        assert view.headers["content-type"] == content_type
        assert getattr(decoded(view.content), "n_frames", 1) == 2
    assert sorted(re.sub(r"\.\w+$", "", name) for name in names) == [f"{prefix}_00001_", f"{prefix}_00002_"]


async def test_save_audio_reports_an_audio_key(http: httpx.AsyncClient, target: Target) -> None:
    prefix = f"audio/contract_{unique_token()}"
    graph = {
        "1": {"class_type": "EmptyAudio", "inputs": {"duration": 0.5, "sample_rate": 8000, "channels": 1}},
        "2": {"class_type": "SaveAudio", "inputs": {"audio": ["1", 0], "filename_prefix": prefix}},
    }
    outputs = await run_for_outputs(http, graph)
    [audio] = outputs["2"]["audio"]
    assert list(outputs["2"]) == ["audio"]
    # Since ~0.25 audio names have no trailing underscore (images, video and latents keep theirs).
    suffix = "_00001.flac" if target.at_least(versions.UUID_PROMPT_IDS) else "_00001_.flac"
    assert audio == {"filename": f"{prefix.split('/')[1]}{suffix}", "subfolder": "audio", "type": "output"}
    view = await http.get("/view", params={"filename": audio["filename"], "subfolder": "audio"})
    assert view.status_code == 200 and view.headers["content-type"] == "audio/flac"
    assert view.content.startswith(b"fLaC")


async def test_save_video_reports_images_and_animated(http: httpx.AsyncClient) -> None:
    token = unique_token()
    graph = {
        "1": empty_image(64, 64, color_for(token), batch_size=4),
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 8.0}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": f"video/contract_{token}",
                                                     "format": "auto", "codec": "auto"}},
    }  # fmt: skip
    outputs = await run_for_outputs(http, graph)
    assert outputs["3"] == {
        "images": [{"filename": f"contract_{token}_00001_.mp4", "subfolder": "video", "type": "output"}],
        "animated": [True],
    }
    view = await http.get("/view", params={"filename": f"contract_{token}_00001_.mp4", "subfolder": "video"})
    assert view.headers["content-type"] == "video/mp4" and view.content[4:8] == b"ftyp"


async def test_save_latent_reports_a_latents_key(http: httpx.AsyncClient) -> None:
    token = unique_token()
    graph = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64 + 8 * (color_for(token) % 8),
                                                            "batch_size": 1}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": f"latents/c_{token}"}},
    }  # fmt: skip
    outputs = await run_for_outputs(http, graph)
    assert outputs == {"2": {"latents": [{"filename": f"c_{token}_00001_.latent", "subfolder": "latents",
                                          "type": "output"}]}}  # fmt: skip
    view = await http.get("/view", params={"filename": f"c_{token}_00001_.latent", "subfolder": "latents"})
    assert view.status_code == 200
    header_size = int.from_bytes(view.content[:8], "little")
    assert b"latent_tensor" in view.content[8 : 8 + header_size], "a safetensors file holding the latent"


async def test_preview_any_reports_text(http: httpx.AsyncClient) -> None:
    text = f"hello contract {unique_token()}"
    graph = {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": text}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    assert await run_for_outputs(http, graph) == {"2": {"text": [text]}}


async def test_save_image_websocket_legacy_client_gets_type_1_png(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    async with open_ws(target) as ws:
        prompt_id = await queue_prompt(http, make_output_graph("SaveImageWebsocket", unique_token()), ws.client_id)
        frames = await ws.collect_run(prompt_id)
    types = frame_types(frames)
    assert types.count("binary:1") == 1
    index = types.index("binary:1")
    assert types[index - 1] == "progress", "the image frame follows its progress frame"
    assert (frames[index - 1]["data"]["value"], frames[index - 1]["data"]["max"]) == (0, 1), "reported before it"
    frame = frames[index]
    assert binary_header(frame) == (1, 2)
    image = decoded(frame[8:])
    assert (image.format, image.size) == ("PNG", (32, 24))
    assert "executed" not in types, "SaveImageWebsocket has no UI output"
    assert (await wait_history(http, prompt_id))["outputs"] == {}


async def test_save_image_websocket_after_feature_flags_gets_type_4(target: Target, http: httpx.AsyncClient) -> None:
    await wait_idle(http)
    async with open_ws(target, feature_flags=True) as ws:
        prompt_id = await queue_prompt(http, make_output_graph("SaveImageWebsocket", unique_token()), ws.client_id)
        frames = await ws.collect_run(prompt_id)
    types = frame_types(frames)
    assert types.count("binary:4") == 1 and "binary:1" not in types
    index = types.index("binary:4")
    assert types[index - 1 : index + 2] == ["progress_state", "binary:4", "progress"]
    metadata, image_bytes = split_metadata_frame(frames[index])
    assert set(metadata) == PREVIEW_METADATA_KEYS
    assert (metadata["node_id"], metadata["prompt_id"], metadata["image_type"]) == ("2", prompt_id, "image/png")
    assert (metadata["display_node_id"], metadata["parent_node_id"], metadata["real_node_id"]) == ("2", None, "2")
    assert decoded(image_bytes).size == (32, 24)


@pytest.mark.timeout(300)  # starts a second server and loads a checkpoint in it
async def test_latent_previews_follow_the_handshake(start_extra_target: StartTarget) -> None:
    previewing = start_extra_target(["--preview-method", "latent2rgb"])
    async with httpx.AsyncClient(base_url=previewing.base_url, timeout=30.0) as http:
        checkpoint = await first_checkpoint(http)
        if checkpoint is None:
            pytest.skip("no checkpoint in models/checkpoints: latent previews need a KSampler run")
        async with open_ws(previewing) as legacy, open_ws(previewing, feature_flags=True) as modern:
            graph = make_txt2img_graph(checkpoint, "contract_preview_" + unique_token(), random.randrange(1 << 30), 2)
            legacy_frames = await legacy.collect_run(await queue_prompt(http, graph, legacy.client_id),
                                                     MODEL_RUN_TIMEOUT_S)  # fmt: skip
            graph = make_txt2img_graph(checkpoint, "contract_preview_" + unique_token(), random.randrange(1 << 30), 2)
            modern_id = await queue_prompt(http, graph, modern.client_id)
            modern_frames = await modern.collect_run(modern_id, MODEL_RUN_TIMEOUT_S)
    legacy_types = frame_types(legacy_frames)
    sampler_part = [t for t in legacy_types if t in ("progress", "binary:1")]
    assert sampler_part == ["progress", "binary:1", "progress", "binary:1"]
    for frame in (f for f in legacy_frames if isinstance(f, bytes)):
        assert binary_header(frame)[:2] == (1, 1), "latent previews are JPEG"
        assert max(decoded(frame[8:]).size) == 512, "previews are scaled to --preview-size"
    modern_types = frame_types(modern_frames)
    assert [t for t in modern_types if t in ("progress", "binary:4")] == ["binary:4", "progress", "binary:4",
                                                                          "progress"]  # fmt: skip
    for frame in (f for f in modern_frames if isinstance(f, bytes)):
        metadata, image_bytes = split_metadata_frame(frame)
        assert set(metadata) == PREVIEW_METADATA_KEYS
        assert (metadata["node_id"], metadata["prompt_id"], metadata["image_type"]) == ("3", modern_id, "image/jpeg")
        assert decoded(image_bytes).format == "JPEG"
