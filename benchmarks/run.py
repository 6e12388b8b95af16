"""One command: comfyui-api's sync POST /prompt against a direct ComfyUI client, on the same ComfyUI, in one run.

    python -m benchmarks.run                       # the bundled simulator as ComfyUI
    python -m benchmarks.run --comfy-dir /path/to/ComfyUI --comfy-python /path/to/venv/bin/python
    python -m benchmarks.run --comfy-url http://127.0.0.1:8188   # an already running ComfyUI (outputs via /view)

Prints p50/p95 latency of a tiny workflow for both and their ratios, throughput with 16 requests in flight, and a
2048x2048 noise PNG returned as base64 (time ratio and the server's peak RSS growth against the payload size).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
from PIL import Image

from benchmarks.direct_client import DirectComfyClient

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise SystemExit(f"process for {url} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer 200 within {timeout_s} s")


def tiny_graph(prefix: str) -> dict[str, Any]:
    colour = random.randrange(0, 0xFFFFFF)
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": colour}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def big_graph(input_name: str, prefix: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": input_name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class ApiClient:
    """comfyui-api's sync POST /prompt, as a user calls it."""

    def __init__(self, base_url: str):
        self._http = httpx.AsyncClient(base_url=base_url, timeout=300.0)

    async def run(self, graph: dict[str, Any]) -> list[str]:
        response = await self._http.post("/prompt", json={"prompt": graph})
        response.raise_for_status()
        return list(response.json()["images"])

    async def aclose(self) -> None:
        await self._http.aclose()


class RssSampler:
    """Samples a process's RSS in a thread; `peak_growth_bytes` is the peak over the baseline taken at start."""

    def __init__(self, pid: int, interval_s: float = 0.002):
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval_s)

    @contextlib.contextmanager
    def running(self) -> Iterator[RssSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    @property
    def peak_growth_bytes(self) -> int:
        return self.peak - self.baseline


async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000.0


async def latency(direct: DirectComfyClient, api: ApiClient, n: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "api": []}
    for i in range(n):
        # Alternate who goes first so drift and cache warmth hit both sides alike.
        order = [("direct", direct), ("api", api)] if i % 2 == 0 else [("api", api), ("direct", direct)]
        for name, client in order:
            graph = tiny_graph(f"bench_{uuid.uuid4().hex[:8]}")
            samples[name].append(await timed(lambda c=client, g=graph: c.run(g)))  # type: ignore[misc]
    return samples


async def throughput(client: DirectComfyClient | ApiClient, total: int, in_flight: int) -> float:
    semaphore = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with semaphore:
            await client.run(tiny_graph(f"tp_{uuid.uuid4().hex[:8]}"))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return total / (time.perf_counter() - started)


def noise_png(path: Path, size: int) -> int:
    pixels = np.random.default_rng(7).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)
    return path.stat().st_size


async def upload_input(base_url: str, path: Path) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as http:
        with path.open("rb") as handle:
            response = await http.post("/upload/image", files={"image": (path.name, handle, "image/png")})
        response.raise_for_status()
        return str(response.json()["name"])


async def big_output(direct: DirectComfyClient, api: ApiClient, comfy_url: str, server_pid: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "bench_noise_2048.png"
        noise_png(png, 2048)
        name = await upload_input(comfy_url, png)
    await direct.run(big_graph(name, f"big_{uuid.uuid4().hex[:8]}"))  # load and cache the input once
    times: dict[str, list[float]] = {"direct": [], "api": []}
    growth: list[int] = []
    payload = 0
    for _ in range(runs):
        images = await direct.run(big_graph(name, f"big_{uuid.uuid4().hex[:8]}"))
        payload = len(images[0]) * 3 // 4
        times["direct"].append(await timed(lambda: direct.run(big_graph(name, f"big_{uuid.uuid4().hex[:8]}"))))
        sampler = RssSampler(server_pid)
        with sampler.running():
            times["api"].append(await timed(lambda: api.run(big_graph(name, f"big_{uuid.uuid4().hex[:8]}"))))
        growth.append(sampler.peak_growth_bytes)
    d, a = statistics.median(times["direct"]), statistics.median(times["api"])
    print(f"\n2048x2048 noise PNG output ({payload / 1e6:.1f} MB) returned as base64, median of {runs}:")
    print(f"  direct {d:8.1f} ms   api {a:8.1f} ms   ratio {a / d:.3f}   (target <= 1.20)")
    worst = max(growth)
    print(f"  server peak RSS growth: {worst / 1e6:.1f} MB = {worst / payload:.2f}x payload   (target <= 2.0x)")


def start_comfy(args: argparse.Namespace, work: Path) -> tuple[str, subprocess.Popen[bytes] | None, dict[str, str]]:
    if args.comfy_url:
        return args.comfy_url.rstrip("/"), None, {}
    dirs = {name: work / name for name in ("input", "output", "temp")}
    for directory in dirs.values():
        directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    flags = ["--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch"]
    for name, directory in dirs.items():
        flags += [f"--{name}-directory", str(directory)]
    if args.comfy_dir:
        cmd = [args.comfy_python, "main.py", "--cpu", *flags]
        cwd = args.comfy_dir
    else:
        cmd = [sys.executable, "-m", "comfyui_api.simulator", *flags]
        cwd = str(work)
    log = (work / "comfyui.log").open("wb")
    process = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/system_stats", process, START_TIMEOUT_S)
    env = {"INPUT_DIR": str(dirs["input"]), "OUTPUT_DIR": str(dirs["output"]), "TEMP_DIR": str(dirs["temp"])}
    env["COMFYUI_OUTPUTS_COLOCATED"] = "true"
    return url, process, env


def start_api(comfy_url: str, extra_env: dict[str, str], work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**os.environ, **extra_env, "COMFYUI_URL": comfy_url, "PORT": str(port), "HOST": "127.0.0.1"}
    env["LOG_LEVEL"] = "WARNING"
    log = (work / "comfyui-api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "comfyui_api"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/ready", process, START_TIMEOUT_S)
    return url, process


def report_latency(samples: dict[str, list[float]]) -> None:
    d50, a50 = statistics.median(samples["direct"]), statistics.median(samples["api"])
    d95, a95 = percentile(samples["direct"], 0.95), percentile(samples["api"], 0.95)
    print(f"tiny workflow, sequential, n={len(samples['api'])} each:")
    print(f"  p50  direct {d50:7.2f} ms   api {a50:7.2f} ms   ratio {a50 / d50:.3f}   (target <= 1.03)")
    print(f"  p95  direct {d95:7.2f} ms   api {a95:7.2f} ms   ratio {a95 / d95:.3f}   (target <= 1.10)")


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="comfyui-api-bench-") as tmp:
        work = Path(tmp)
        comfy_url, comfy_process, extra_env = start_comfy(args, work)
        api_url, api_process = start_api(comfy_url, extra_env, work)
        direct, api = DirectComfyClient(comfy_url), ApiClient(api_url)
        await direct.start()
        try:
            target = "real ComfyUI" if (args.comfy_dir or args.comfy_url) else "simulator"
            print(f"ComfyUI: {target} at {comfy_url}; comfyui-api at {api_url}")
            reads = "through GET /view (attached, no shared disk)" if args.comfy_url else "from ComfyUI's output folder"
            print(f"comfyui-api reads outputs {reads}\n")
            await latency(direct, api, 10)  # warm both paths
            report_latency(await latency(direct, api, args.n))
            rates = {}
            for name, client in (("direct", direct), ("api", api)):
                rates[name] = await throughput(client, args.throughput_total, 16)
            print(f"\nthroughput, 16 in flight, {args.throughput_total} requests:")
            print(
                f"  direct {rates['direct']:7.1f} req/s   api {rates['api']:7.1f} req/s   "
                f"ratio {rates['api'] / rates['direct']:.3f}   (target >= 0.95)"
            )
            await big_output(direct, api, comfy_url, api_process.pid, args.big_runs)
        finally:
            await direct.aclose()
            await api.aclose()
            for process in (api_process, comfy_process):
                if process is not None:
                    process.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfy-url", help="an already running ComfyUI")
    parser.add_argument("--comfy-dir", help="a ComfyUI checkout to start")
    parser.add_argument("--comfy-python", default=sys.executable, help="python for --comfy-dir")
    parser.add_argument("--n", type=int, default=200, help="sequential requests per side")
    parser.add_argument("--throughput-total", type=int, default=320)
    parser.add_argument("--big-runs", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
