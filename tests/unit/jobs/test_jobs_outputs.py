"""Output collection: every kind ComfyUI reports, temp-vs-output selection, moving/keeping ComfyUI's files,
and the /view path when ComfyUI is not on our filesystem."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comfyui_api.errors import ComfyProtocolError
from comfyui_api.jobs.outputs import OutputCollector, discard, parse_outputs
from comfyui_api.settings import ComfySettings
from tests.unit.jobs.samples import audio_bytes, image_bytes

PNG = image_bytes("PNG")


def entry(filename: str, subfolder: str = "", folder_type: str = "output") -> dict:
    return {"filename": filename, "subfolder": subfolder, "type": folder_type}


def test_every_output_kind_is_recognised() -> None:
    outputs = {
        "9": {"images": [entry("a_00001_.png")]},
        "10": {"images": [entry("anim_00001_.webp")], "animated": [True]},
        "11": {"images": [entry("clip_00001_.mp4", "video")], "animated": [True]},
        "12": {"gifs": [entry("vhs_00001.gif")], "videos": [entry("vhs_00001.webm")]},
        "13": {"audio": [entry("sound_00001_.flac", "audio")]},
        "14": {"latents": [entry("lat_00001_.latent", "latents")]},
        "15": {"3d": [entry("mesh.glb", "3d")], "unrelated": [1, 2], "more": "text"},
        "16": {"text": ["hello", "world"]},
    }
    refs, texts = parse_outputs(outputs)
    assert [(ref.node_id, ref.kind, ref.filename) for ref in refs] == [
        ("9", "image", "a_00001_.png"),
        ("10", "animated", "anim_00001_.webp"),
        ("11", "video", "clip_00001_.mp4"),
        ("12", "animated", "vhs_00001.gif"),
        ("12", "video", "vhs_00001.webm"),
        ("13", "audio", "sound_00001_.flac"),
        ("14", "latent", "lat_00001_.latent"),
        ("15", "file", "mesh.glb"),
    ]
    assert refs[2].subfolder == "video"
    assert texts == ["hello", "world"]


def test_temp_outputs_count_only_without_saved_outputs() -> None:
    previews_only = {"3": {"images": [entry("ComfyUI_temp_abcde_00001_.png", folder_type="temp")]}}
    refs, _ = parse_outputs(previews_only)
    assert [ref.folder_type for ref in refs] == ["temp"]
    mixed = {**previews_only, "4": {"images": [entry("saved.png")]}, "5": {"images": [entry("x.png", "", "input")]}}
    refs, _ = parse_outputs(mixed)
    assert [ref.filename for ref in refs] == ["saved.png"]


def comfy_dirs(tmp_path: Path, **overrides) -> ComfySettings:
    settings = ComfySettings(output_dir=tmp_path / "output", temp_dir=tmp_path / "temp", **overrides)
    (tmp_path / "output" / "sub").mkdir(parents=True)
    (tmp_path / "temp").mkdir()
    return settings


class NoView:
    async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int:
        raise AssertionError("co-located outputs must be read from disk")


async def test_colocated_outputs_are_moved_out_of_comfyui(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path)
    (tmp_path / "output" / "sub" / "j_00001_.png").write_bytes(PNG)
    flac = audio_bytes("flac", "flac")
    (tmp_path / "output" / "j_00001_.flac").write_bytes(flac)
    collector = OutputCollector(settings, NoView(), tmp_path / "work")
    files, _ = await collector.collect(
        "job", {"9": {"images": [entry("j_00001_.png", "sub")]}, "10": {"audio": [entry("j_00001_.flac")]}}
    )
    assert [(f.kind, f.content_type, f.size_bytes) for f in files] == [
        ("image", "image/png", len(PNG)),
        ("audio", "audio/flac", len(flac)),
    ]
    assert all(f.path is not None and f.path.parent == tmp_path / "work" for f in files)
    assert [f.path.name for f in files if f.path is not None] == ["job@000_j_00001_.png", "job@001_j_00001_.flac"]
    assert files[0].path is not None and files[0].path.read_bytes() == PNG
    assert list((tmp_path / "output").rglob("*.*")) == []
    discard(files)
    assert list((tmp_path / "work").iterdir()) == []


async def test_a_failed_collection_leaves_no_files(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path)
    (tmp_path / "output" / "a.png").write_bytes(PNG)
    collector = OutputCollector(settings, NoView(), tmp_path / "work")
    with pytest.raises(ComfyProtocolError, match="not on disk"):
        await collector.collect("job", {"9": {"images": [entry("a.png"), entry("gone.png")]}})
    assert list((tmp_path / "work").iterdir()) == []


async def test_remove_job_files_removes_only_that_jobs_files(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path)
    collector = OutputCollector(settings, NoView(), tmp_path / "work")
    for job_id in ("job", "job.2", "job_3"):
        name = f"{job_id}.png"
        (tmp_path / "output" / name).write_bytes(PNG)
        await collector.collect(job_id, {"9": {"images": [entry(name)]}})
    collector.remove_job_files("job")
    assert sorted(path.name for path in (tmp_path / "work").iterdir()) == ["job.2@000_job.2.png", "job_3@000_job_3.png"]


def test_a_job_id_that_is_not_a_file_name_is_refused(tmp_path: Path) -> None:
    collector = OutputCollector(comfy_dirs(tmp_path), NoView(), tmp_path / "work")
    for job_id in ("a/b", "a@b", "a\\b"):
        with pytest.raises(ValueError, match="cannot name a local file"):
            collector.local_path(job_id, 0, "x.png")


async def test_kept_outputs_stay_in_comfyui(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path, keep_outputs=True)
    original = tmp_path / "output" / "j_00001_.png"
    original.write_bytes(PNG)
    collector = OutputCollector(settings, NoView(), tmp_path / "work")
    files, _ = await collector.collect("job", {"9": {"images": [entry("j_00001_.png")]}})
    discard(files)
    assert original.read_bytes() == PNG


async def test_request_can_override_keep(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path, keep_outputs=True)
    original = tmp_path / "output" / "j.png"
    original.write_bytes(PNG)
    files, _ = await OutputCollector(settings, NoView(), tmp_path / "work").collect(
        "job", {"9": {"images": [entry("j.png")]}}, keep=False
    )
    assert not original.exists()
    assert files[0].path is not None and files[0].path.exists()


async def test_missing_file_is_a_protocol_error(tmp_path: Path) -> None:
    collector = OutputCollector(comfy_dirs(tmp_path), NoView(), tmp_path / "work")
    with pytest.raises(ComfyProtocolError, match="not on disk"):
        await collector.collect("job", {"9": {"images": [entry("gone.png")]}})


async def test_paths_outside_the_output_folder_are_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.png").write_bytes(PNG)
    collector = OutputCollector(comfy_dirs(tmp_path), NoView(), tmp_path / "work")
    with pytest.raises(ComfyProtocolError, match="outside"):
        await collector.collect("job", {"9": {"images": [entry("secret.png", "..")]}})
    assert (tmp_path / "secret.png").exists()


async def test_remote_comfyui_outputs_come_through_view(tmp_path: Path) -> None:
    class View:
        def __init__(self) -> None:
            self.asked: list[tuple[str, str, str]] = []

        async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int:
            self.asked.append((filename, subfolder, folder_type))
            return await asyncio.to_thread(dest.write_bytes, PNG)

    view = View()
    settings = comfy_dirs(tmp_path, outputs_colocated=False)
    files, _ = await OutputCollector(settings, view, tmp_path / "work").collect(
        "job", {"9": {"images": [entry("ComfyUI_temp_x_00001_.png", "", "temp")]}}
    )
    assert view.asked == [("ComfyUI_temp_x_00001_.png", "", "temp")]
    assert files[0].content_type == "image/png"
    assert files[0].comfy_type == "temp"


async def test_same_name_in_two_subfolders_does_not_collide(tmp_path: Path) -> None:
    settings = comfy_dirs(tmp_path)
    (tmp_path / "output" / "x.png").write_bytes(PNG)
    (tmp_path / "output" / "sub" / "x.png").write_bytes(image_bytes("PNG", color=(1, 2, 3)))
    files, _ = await OutputCollector(settings, NoView(), tmp_path / "work").collect(
        "job", {"9": {"images": [entry("x.png"), entry("x.png", "sub")]}}
    )
    assert files[0].path != files[1].path
    assert files[0].path is not None and files[1].path is not None
    assert files[0].path.read_bytes() != files[1].path.read_bytes()


class GatedView:
    """GET /view stand-in whose downloads wait for `release` (so a test sees them in flight), or fail for names
    in `failing`."""

    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.asked: list[tuple[str, str, str]] = []
        self.release = asyncio.Event()
        self.failing = failing
        self.in_flight = 0
        self.moved = asyncio.Event()  # set whenever another download is in flight

    async def download_output(self, filename: str, subfolder: str, folder_type: str, dest: Path) -> int:
        self.asked.append((filename, subfolder, folder_type))
        await asyncio.to_thread(dest.write_bytes, PNG[:10])  # a partial file, as a download leaves in flight
        self.in_flight += 1
        self.moved.set()
        await self.release.wait()
        if filename in self.failing:
            await asyncio.to_thread(dest.unlink)
            raise ComfyProtocolError(f"could not serve {filename}")
        await asyncio.to_thread(dest.write_bytes, PNG)
        return len(PNG)


async def test_outputs_are_fetched_as_nodes_report_them_and_collected_without_a_second_download(
    tmp_path: Path,
) -> None:
    view = GatedView()
    collector = OutputCollector(comfy_dirs(tmp_path, outputs_colocated=False), view, tmp_path / "work")
    prefetch = collector.prefetch("job")
    assert prefetch is not None
    first, second = {"images": [entry("a.png", "sub")]}, {"images": [entry("b.png"), entry("p.png", "", "temp")]}
    prefetch.node_reported("9", first)
    prefetch.node_reported("10", second)
    prefetch.node_reported("9", first)  # reported again (a cached node's frame): fetched once
    await asyncio.sleep(0.05)  # the prompt goes on: the downloads start
    assert view.asked == [("a.png", "sub", "output"), ("b.png", "", "output")]  # previews are left for later
    view.release.set()
    files, _ = await collector.collect("job", {"9": first, "10": second}, prefetched=prefetch)
    await prefetch.aclose()
    assert view.asked == [("a.png", "sub", "output"), ("b.png", "", "output")]
    assert [file.filename for file in files] == ["a.png", "b.png"]
    assert all(file.path is not None and file.path.read_bytes() == PNG for file in files)
    assert sorted(path.name for path in (tmp_path / "work").iterdir()) == ["job@000_a.png", "job@001_b.png"]


async def test_a_run_that_ends_without_collecting_leaves_no_prefetched_file(tmp_path: Path) -> None:
    view = GatedView()
    collector = OutputCollector(comfy_dirs(tmp_path, outputs_colocated=False), view, tmp_path / "work")
    prefetch = collector.prefetch("job")
    assert prefetch is not None
    prefetch.node_reported("9", {"images": [entry(f"{n}.png") for n in range(6)]})
    async with asyncio.timeout(5):
        while view.in_flight < 4:
            view.moved.clear()
            await view.moved.wait()
    await asyncio.sleep(0.05)
    assert len(view.asked) == 4  # at most four at once for one job
    assert len(list((tmp_path / "work").iterdir())) == 4
    await prefetch.aclose()  # the run failed: in-flight downloads are cancelled, their files removed
    assert list((tmp_path / "work").iterdir()) == []


async def test_a_prefetch_that_failed_fails_the_collection_and_leaves_no_file(tmp_path: Path) -> None:
    view = GatedView(failing=frozenset({"b.png"}))
    view.release.set()
    collector = OutputCollector(comfy_dirs(tmp_path, outputs_colocated=False), view, tmp_path / "work")
    prefetch = collector.prefetch("job")
    assert prefetch is not None
    outputs = {"9": {"images": [entry("a.png"), entry("b.png")]}}
    prefetch.node_reported("9", outputs["9"])
    await asyncio.sleep(0.05)  # both downloads started and ended (one failed) before the prompt ended
    assert len(view.asked) == 2
    with pytest.raises(ComfyProtocolError, match=r"could not serve b\.png"):
        await collector.collect("job", outputs, prefetched=prefetch)
    await prefetch.aclose()
    assert list((tmp_path / "work").iterdir()) == []
    assert len(view.asked) == 2  # the failed download is not tried again by the collector


async def test_a_file_collected_right_after_it_was_reported_is_downloaded_once_by_the_collector(
    tmp_path: Path,
) -> None:
    view = GatedView()
    view.release.set()
    collector = OutputCollector(comfy_dirs(tmp_path, outputs_colocated=False), view, tmp_path / "work")
    prefetch = collector.prefetch("job")
    assert prefetch is not None
    outputs = {"9": {"images": [entry("last.png")]}}
    prefetch.node_reported("9", outputs["9"])  # the prompt's last save: it ends at once
    files, _ = await collector.collect("job", outputs, prefetched=prefetch)
    await asyncio.sleep(0.05)
    await prefetch.aclose()
    assert view.asked == [("last.png", "", "output")]
    assert [path.name for path in (tmp_path / "work").iterdir()] == ["job@000_last.png"]
    assert files[0].size_bytes == len(PNG)


def test_colocated_outputs_are_not_prefetched(tmp_path: Path) -> None:
    assert OutputCollector(comfy_dirs(tmp_path), NoView(), tmp_path / "work").prefetch("job") is None
