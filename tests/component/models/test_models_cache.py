"""The model cache against a real HTTP server on loopback: one download per URL, presigned variants sharing an
entry, our own LRU order, pins, eviction events, hard links versus copies, auth-needed hits, no leftovers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from comfyui_api.errors import StorageError
from comfyui_api.models.cache import ModelCache
from comfyui_api.models.records import cache_key
from comfyui_api.storage.base import Credential
from tests.component.models.model_server import ModelServer, serve_models


class Clock:
    """A fake clock: each reading is one second after the last, so LRU order is the order of use."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, data: Mapping[str, Any]) -> None:
        self.seen.append((name, dict(data)))

    def named(self, name: str) -> list[dict[str, Any]]:
        return [data for seen, data in self.seen if seen == name]


def make_cache(cache_dir: Path, **kwargs: Any) -> ModelCache:
    kwargs.setdefault("clock", Clock())
    return ModelCache(cache_dir, **kwargs)


@pytest.fixture
async def server() -> AsyncIterator[ModelServer]:
    files = {f"/m/{name}.safetensors": bytes([i]) * 100 for i, name in enumerate("abcde", start=1)}
    async with serve_models(ModelServer(files=files)) as running:
        yield running


@pytest.fixture
def other_filesystem_dir() -> Iterator[Path | None]:
    """A folder on another filesystem than the temp dir (tmpfs /dev/shm), or None where there is none."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == Path(tempfile.gettempdir()).stat().st_dev:
        yield None
        return
    path = Path(tempfile.mkdtemp(prefix="models-copy-", dir=shm))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def test_concurrent_requests_for_one_url_share_one_download(server: ModelServer, tmp_path: Path) -> None:
    server.gate = asyncio.Event()
    cache = make_cache(tmp_path / "cache")
    await cache.open()
    try:
        first = asyncio.create_task(cache.fetch(server.url("/m/a.safetensors", "X-Amz-Signature=one&X-Amz-Expires=9")))
        second = asyncio.create_task(cache.fetch(server.url("/m/a.safetensors", "X-Amz-Signature=two&X-Amz-Expires=5")))
        await server.wait_for_request()
        assert not first.done() and not second.done()
        server.gate.set()
        one, two = await asyncio.wait_for(asyncio.gather(first, second), timeout=10)
    finally:
        server.gate.set()
        await cache.aclose()
    assert server.gets["/m/a.safetensors"] == 1
    assert one == two
    assert one.path.read_bytes() == bytes([1]) * 100
    assert one.path.parent == tmp_path / "cache" and one.path.suffix == ".safetensors"


async def test_presigned_query_variants_hit_the_same_entry(server: ModelServer, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache")
    try:
        first = await cache.fetch(server.url("/m/b.safetensors", "sig=AAA&se=2030-01-01&sv=2022-11-02"))
        again = await cache.fetch(server.url("/m/b.safetensors", "sig=BBB&se=2031-01-01&sv=2022-11-02"))
    finally:
        await cache.aclose()
    assert server.gets["/m/b.safetensors"] == 1
    assert again.path == first.path
    assert first.url == server.url("/m/b.safetensors")
    assert first.auth_used  # a signed link: the hit was re-checked with a one-byte request, not a download
    assert server.probes["/m/b.safetensors"] == 1


async def test_meta_sidecar_records_the_download(server: ModelServer, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache")
    try:
        model = await cache.fetch(server.url("/m/c.safetensors", "download=true"))
    finally:
        await cache.aclose()
    meta = json.loads((tmp_path / "cache" / f"{model.key}.meta").read_text())
    assert meta["url"] == server.url("/m/c.safetensors")
    assert meta["size_bytes"] == 100
    assert meta["auth_used"] is False
    assert meta["downloaded_at"] > 0 and meta["last_used_at"] > 0
    assert meta["filename"] == "c.safetensors"
    assert model.key == cache_key(server.url("/m/c.safetensors"))
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [f"{model.key}.meta", f"{model.key}.safetensors"]


async def test_lru_evicts_the_least_recently_used_file_and_never_a_pinned_one(
    server: ModelServer, tmp_path: Path
) -> None:
    events = Events()
    cache = make_cache(tmp_path / "cache", max_size_bytes=250, on_event=events)
    models = tmp_path / "models" / "checkpoints"
    try:
        a = await cache.fetch(server.url("/m/a.safetensors"))
        b = await cache.fetch(server.url("/m/b.safetensors"))
        placed_a = await cache.place(a, models / "a.safetensors")
        await cache.fetch(server.url("/m/a.safetensors"))  # a is now more recently used than b
        lease = cache.pin([b.path])  # but b is in use by a job
        c = await cache.fetch(server.url("/m/c.safetensors"))
        assert not a.path.exists() and not placed_a.exists()  # a went, with its placement
        assert b.path.exists() and c.path.exists()
        [deleted] = events.named("storage.file_deleted")
        assert deleted["url"] == server.url("/m/a.safetensors")
        assert deleted["path"] == str(a.path) and deleted["size"] == 100
        assert deleted["placements"] == [str(placed_a)]

        lease.release()
        await cache.fetch(server.url("/m/d.safetensors"))  # now b is the oldest unused file
        assert not b.path.exists() and c.path.exists()
        assert [e["url"] for e in events.named("storage.file_deleted")][1:] == [server.url("/m/b.safetensors")]
        assert cache.usage()["size_bytes"] == 200
    finally:
        await cache.aclose()


async def test_over_limit_with_everything_pinned_evicts_nothing(server: ModelServer, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache", max_size_bytes=150)
    try:
        with cache.pin() as lease:
            a = await cache.fetch(server.url("/m/a.safetensors"), lease=lease)
            b = await cache.fetch(server.url("/m/b.safetensors"), lease=lease)
            assert a.path.exists() and b.path.exists()
            assert cache.usage()["size_bytes"] == 200
        assert [m.url for m in cache.evict_over_limit()] == [server.url("/m/a.safetensors")]
    finally:
        await cache.aclose()


async def test_lru_order_is_our_own_record_not_atime(server: ModelServer, tmp_path: Path) -> None:
    clock = Clock()
    cache = make_cache(tmp_path / "cache", clock=clock)
    try:
        a = await cache.fetch(server.url("/m/a.safetensors"))
        b = await cache.fetch(server.url("/m/b.safetensors"))
        await cache.fetch(server.url("/m/a.safetensors"))  # a used last
    finally:
        await cache.aclose()
    os.utime(b.path, (4_000_000_000, 4_000_000_000))  # atime/mtime say b is newest; our record says a is
    os.utime(a.path, (1, 1))
    events = Events()
    reopened = make_cache(tmp_path / "cache", clock=clock, max_size_bytes=150, on_event=events)
    try:
        await reopened.open()
    finally:
        await reopened.aclose()
    assert a.path.exists() and not b.path.exists()
    assert [e["url"] for e in events.named("storage.file_deleted")] == [server.url("/m/b.safetensors")]


async def test_placement_hard_links_on_the_same_filesystem(server: ModelServer, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache")
    folder = tmp_path / "models" / "loras"
    try:
        model = await cache.fetch(server.url("/m/a.safetensors"))
        placed = await cache.place(model, folder / "a.safetensors")
        assert placed == folder / "a.safetensors"
        assert placed.stat().st_ino == model.path.stat().st_ino
        assert not placed.is_symlink()
        assert await cache.place(model, folder / "a.safetensors") == placed  # idempotent
        (folder / "b.safetensors").write_bytes(b"the user's own file")
        beside = await cache.place(model, folder / "b.safetensors")
        assert beside == folder / f"b.{model.key[:8]}.safetensors"
        assert (folder / "b.safetensors").read_bytes() == b"the user's own file"
        replaced = await cache.place(model, folder / "b.safetensors", replace=True)
        assert replaced.read_bytes() == model.path.read_bytes()
        assert sorted(p.name for p in folder.iterdir()) == sorted(["a.safetensors", "b.safetensors", beside.name])
    finally:
        await cache.aclose()


@pytest.mark.parametrize("how", ["second_filesystem", "link_refused"])
async def test_placement_copies_when_linking_is_impossible(
    server: ModelServer,
    tmp_path: Path,
    other_filesystem_dir: Path | None,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    if how == "second_filesystem":
        if other_filesystem_dir is None:
            pytest.skip("no second filesystem (tmpfs /dev/shm) on this machine")
        folder = other_filesystem_dir / "vae"
    else:  # the same filesystem, but hard links refused (as on some network or overlay mounts)

        def no_link(*_args: object) -> None:
            raise OSError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
        folder = tmp_path / "models" / "vae"
    events = Events()
    cache = make_cache(tmp_path / "cache", max_size_bytes=150, on_event=events)
    try:
        model = await cache.fetch(server.url("/m/a.safetensors"))
        placed = await cache.place(model, folder / "a.safetensors")
        assert placed.read_bytes() == model.path.read_bytes()
        assert placed.stat().st_ino != model.path.stat().st_ino and not placed.is_symlink()
        assert await cache.place(model, folder / "a.safetensors") == placed  # our copy is recognised
        assert [p.name for p in folder.iterdir()] == ["a.safetensors"]  # no temp files left
        await cache.fetch(server.url("/m/b.safetensors"))  # evicts a, and with it the copy
        assert not placed.exists()
        assert events.named("storage.file_deleted")[0]["placements"] == [str(placed)]
    finally:
        await cache.aclose()


async def test_a_cached_file_that_needed_auth_is_only_served_to_a_request_that_can_read_it(
    server: ModelServer, tmp_path: Path
) -> None:
    server.bearer = "s3cret"
    url = server.url("/m/e.safetensors")
    credentials = [Credential(url_pattern=server.base_url, auth={"type": "bearer", "token": "s3cret"})]
    cache = make_cache(tmp_path / "cache")
    try:
        model = await cache.fetch(url, credentials)
        assert model.auth_used
        with pytest.raises(StorageError, match="refused: HTTP 401"):
            await cache.fetch(url)
        again = await cache.fetch(url, credentials)
    finally:
        await cache.aclose()
    assert again.path == model.path
    assert server.gets["/m/e.safetensors"] == 1
    assert "s3cret" not in (tmp_path / "cache" / f"{model.key}.meta").read_text()


async def test_failed_and_timed_out_downloads_leave_nothing_behind(server: ModelServer, tmp_path: Path) -> None:
    cache = make_cache(tmp_path / "cache", download_timeout_s=0.5)
    try:
        with pytest.raises(StorageError, match="HTTP 404"):
            await cache.fetch(server.url("/m/missing.safetensors", "token=hidden"))
        server.gate = asyncio.Event()
        with pytest.raises(StorageError, match=r"took longer than 0\.5s"):
            await cache.fetch(server.url("/m/a.safetensors"))
    finally:
        if server.gate is not None:
            server.gate.set()
        await cache.aclose()
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert leftovers == []


async def test_a_download_survives_one_waiter_being_cancelled(server: ModelServer, tmp_path: Path) -> None:
    server.gate = asyncio.Event()
    cache = make_cache(tmp_path / "cache")
    url = server.url("/m/c.safetensors")
    try:
        impatient = asyncio.create_task(cache.fetch(url))
        patient = asyncio.create_task(cache.fetch(url))
        await server.wait_for_request()
        impatient.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await impatient
        server.gate.set()
        model = await asyncio.wait_for(patient, timeout=10)
    finally:
        server.gate.set()
        await cache.aclose()
    assert model.path.read_bytes() == bytes([3]) * 100
    assert server.gets["/m/c.safetensors"] == 1


async def test_files_named_by_content_disposition(tmp_path: Path) -> None:
    path = "/api/download/models/128713"
    model_server = ModelServer(files={path: b"x" * 10}, dispositions={path: "dream.safetensors"})
    async with serve_models(model_server) as running:
        cache = make_cache(tmp_path / "cache")
        try:
            model = await cache.fetch(running.url(path, "type=Model&token=abc"))
        finally:
            await cache.aclose()
    assert model.filename == "dream.safetensors"
    assert model.path.suffix == ".safetensors"
    assert model.url == running.url(path, "type=Model")


async def test_downloads_leave_the_shared_temp_folder_in_place_and_empty(tmp_path: Path) -> None:
    """Each download works in its own folder under one shared temp folder. Removing the shared folder when a download
    ended and it looked empty raced with another download creating its folder there; so it stays until close."""

    async def write_model(url: str, work_dir: Path, credentials: object) -> str:
        path = work_dir / url.rsplit("/", 1)[-1]
        await asyncio.to_thread(path.write_bytes, url.encode())
        return str(path)

    cache = make_cache(tmp_path / "cache", downloader=write_model)
    await cache.open()
    try:
        urls = [f"https://models.example/m{i}.safetensors" for i in range(8)]
        models = await asyncio.gather(*(cache.fetch(url) for url in urls))
        assert [model.path.read_bytes() for model in models] == [url.encode() for url in urls]
        shared = tmp_path / "cache" / ".tmp"
        assert shared.is_dir() and list(shared.iterdir()) == []
    finally:
        await cache.aclose()
    assert not shared.exists()  # with no download left, closing the cache removes it
