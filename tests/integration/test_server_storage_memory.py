"""A 256 MiB output uploaded to S3 (moto, multipart) by the real server: the server's peak RSS grows by less than
64 MB while it collects, uploads and answers. The output is a real job's: KSampler noise latents (4 x 16384 x 16384
pixels' worth) written by SaveLatent, an uncompressed safetensors file. KEEP_OUTPUTS leaves ComfyUI's copy on disk,
so the uploaded object is compared byte for byte with it.

The peak is the kernel's VmHWM of the server process, reset (/proc/<pid>/clear_refs) just before the job, so it
covers the whole job and nothing before it; a 10 ms psutil sampler gives a second figure."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.graphs import ksampler_node
from tests.integration.server import CHECKPOINT, ServerProcess, image_graph, start_server
from tests.integration.storage_world import StorageWorld, storage_world
from tests.rss import RssSampler, status_kib

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads peak RSS from /proc"),
    pytest.mark.simulator_only(reason="KSampler on 16384-pixel latents: instant on the simulator, far too slow on CPU"),
]

LIMIT_BYTES = 64 * 1024 * 1024
MIN_OUTPUT_BYTES = 200 * 1024 * 1024
SIDE_PX = 16384  # the largest EmptyLatentImage side: a 2048 x 2048 latent of 4 float32 channels = 64 MiB
BATCH = 4


def latent_graph(side_px: int = SIDE_PX, batch: int = BATCH) -> dict[str, Any]:
    """Noise latents of batch x side_px^2 pixels, saved uncompressed: batch * side_px^2 / 4 bytes."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": side_px, "height": side_px, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "noise", "clip": ["4", 1]}},
        "3": ksampler_node(seed=5, steps=1, negative=["6", 0]),
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "big"}},
    }


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak RSS (VmHWM) to the current RSS


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageWorld]:
    with storage_world(tmp_path_factory.mktemp("storage")) as started:
        yield started


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, world: StorageWorld) -> Iterator[ServerProcess]:
    env = {**world.server_env(), "KEEP_OUTPUTS": "true", "PROMPT_TIMEOUT_S": "400"}
    api = start_server(tmp_path_factory.mktemp("api"), env=env)
    try:
        yield api
    finally:
        api.stop()


@pytest.mark.timeout(600)
def test_256_mib_output_uploads_with_peak_rss_growth_under_64_mb(server: ServerProcess, world: StorageWorld) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    field, options = world.target("s3")
    for warm_up in (image_graph(), latent_graph(side_px=4096)):
        # Loads botocore and takes the multipart path once (a 16 MiB output) before anything is measured.
        answer = httpx.post(server.url("/prompt"), json={"prompt": warm_up, field: options}, timeout=120)
        assert answer.status_code == 200, answer.text[:500]

    rss_before = status_kib(pid, "VmRSS") * 1024
    reset_peak(pid)
    started = time.monotonic()
    with RssSampler(pid) as sampler:
        response = httpx.post(server.url("/prompt"), json={"prompt": latent_graph(), field: options}, timeout=500)
    seconds = time.monotonic() - started
    peak = status_kib(pid, "VmHWM") * 1024

    assert response.status_code == 200, response.text[:500]
    info = response.json()["outputs"][0]
    size_bytes = info["size_bytes"]
    growth = peak - rss_before
    print(
        f"\n{size_bytes / 2**20:.1f} MiB output uploaded to S3 in {seconds:.1f} s "
        f"(upload {response.json()['stats']['upload_time'] / 1000:.1f} s): server RSS {rss_before / 2**20:.1f} MiB "
        f"before, peak growth {growth / 2**20:.1f} MiB (VmHWM), {(sampler.peak_bytes - rss_before) / 2**20:.1f} MiB "
        f"(10 ms sampler)"
    )
    assert size_bytes >= MIN_OUTPUT_BYTES
    assert growth < LIMIT_BYTES, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert sampler.peak_bytes - rss_before < LIMIT_BYTES
    kept = server.dirs.output / info["filename"]
    uploaded = world.s3_admin().get_object(Bucket=world.bucket, Key=info["url"].split("/", 3)[3])
    digest = hashlib.sha256()
    for chunk in uploaded["Body"].iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
    assert digest.hexdigest() == sha256_of(kept)
