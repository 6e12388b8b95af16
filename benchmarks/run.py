"""One command: comfyui-api's sync POST /prompt against a direct ComfyUI client, on the same ComfyUI, in one run.

    python -m benchmarks.run                       # the bundled simulator as ComfyUI
    python -m benchmarks.run --comfy-dir /path/to/ComfyUI --comfy-python /path/to/venv/bin/python
    python -m benchmarks.run --comfy-url http://127.0.0.1:8188   # an already running ComfyUI (outputs via /view)

Prints p50/p95 latency of a tiny workflow for both and their ratios, throughput with 16 requests in flight, a
2048x2048 noise PNG returned as base64 (time ratio and the server's peak RSS growth against the payload size), one
job's event stream read by 50 subscribers, the direct client itself pointed at the /comfyui door, a RunPod job
through /v2/.../runsync and through the worker's handler (the runpod SDK's local test API), the attach and SQLite
variants, and, with the simulator and a RabbitMQ at --amqp-url, 3 AMQP workers' task throughput against 1
worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import socket
import statistics
import struct
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

from benchmarks.amqp import report_amqp
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


class RunpodClient(ApiClient):
    """A RunPod client's runsync call: `POST <base>/runsync {"input": {"workflow": ...}}`, outputs as base64."""

    async def run(self, graph: dict[str, Any]) -> list[str]:
        response = await self._http.post("/runsync", json={"input": {"workflow": graph, "return_base64": True}})
        response.raise_for_status()
        answer = response.json()
        if answer.get("status") != "COMPLETED":
            raise RuntimeError(f"runsync answered {answer}")
        return [image["data"] for image in answer["output"]["images"]]


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


async def latency(
    direct: DirectComfyClient,
    api: ApiClient | DirectComfyClient,
    n: int,
    make_graph: Callable[[str], dict[str, Any]] = tiny_graph,
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {"direct": [], "api": []}
    for i in range(n):
        # Alternate who goes first so drift and cache warmth hit both sides alike.
        order = [("direct", direct), ("api", api)] if i % 2 == 0 else [("api", api), ("direct", direct)]
        for name, client in order:
            graph = make_graph(f"bench_{uuid.uuid4().hex[:8]}")
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


def _start_comfyui_api(
    args: list[str], env: dict[str, str], work: Path, name: str, port: int, ready_path: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """`python -m comfyui_api ARGS` attached to a ComfyUI (env), logging to WORK/NAME.log; returns once
    `ready_path` on `port` answers 200."""
    env = {**os.environ, **env, "LOG_LEVEL": "WARNING"}
    log = (work / f"{name}.log").open("wb")
    argv = [sys.executable, "-m", "comfyui_api", *args]
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + ready_path, process, START_TIMEOUT_S)
    return url, process


def start_api(
    comfy_url: str, extra_env: dict[str, str], work: Path, name: str = "comfyui-api"
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    env = {**extra_env, "COMFYUI_URL": comfy_url, "PORT": str(port), "HOST": "127.0.0.1"}
    return _start_comfyui_api([], env, work, name, port, "/ready")


def report_latency(
    samples: dict[str, list[float]],
    *,
    p50_target: float = 1.03,
    p95_target: float = 1.10,
    workflow: str = "tiny workflow",
) -> None:
    d50, a50 = statistics.median(samples["direct"]), statistics.median(samples["api"])
    d95, a95 = percentile(samples["direct"], 0.95), percentile(samples["api"], 0.95)
    print(f"{workflow}, sequential, n={len(samples['api'])} each:")
    print(f"  p50  direct {d50:7.2f} ms   api {a50:7.2f} ms   ratio {a50 / d50:.3f}   (target <= {p50_target:.2f})")
    print(f"  p95  direct {d95:7.2f} ms   api {a95:7.2f} ms   ratio {a95 / d95:.3f}   (target <= {p95_target:.2f})")


def slow_graph(steps: int, checkpoint: str, seed: int = 1) -> dict[str, Any]:
    """A sampler run that emits one progress event per step: the stream the fan-out row watches."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "fanout"}},
    }


_EVENT_ID = re.compile(rb"(?:^|\n)id: (\d+)\n")


# Linux: the kernel stamps each received packet with the time it reached the socket (SCM_TIMESTAMPNS == the option).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def _kernel_arrival_s(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return seconds + nanoseconds / 1e9
    return None


async def _subscriber(api_url: str, job_id: str, arrivals: dict[int, float], connected: list[float]) -> None:
    """Reads /jobs/<id>/events to its end over a bare socket, noting when it was connected and when each event id
    arrived. Arrival is the kernel's receive timestamp of the bytes, not when this process got round to reading
    them: fifty readers in one benchmark process on a small machine would otherwise measure their own scheduling
    (and an HTTP client library's per-chunk cost) instead of the server's fan-out."""
    host, port = api_url.removeprefix("http://").rsplit(":", 1)
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.setblocking(False)
    done: asyncio.Future[None] = loop.create_future()
    head = b""  # the answer's head, until it is complete
    tail = b""  # the end of the last read: an id line may straddle two reads
    answered = False

    def readable() -> None:
        nonlocal head, tail, answered
        while not done.done():
            try:
                data, ancillary, _, _ = sock.recvmsg(65536, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            except OSError as exc:
                done.set_exception(SystemExit(f"the event stream broke: {exc!r}"))
                return
            if not data:
                done.set_exception(SystemExit("the event stream closed before its terminal event"))
                return
            now = _kernel_arrival_s(ancillary) or time.time()
            if not answered:
                head += data
                if b"\r\n\r\n" not in head:
                    continue
                head, _, data = head.partition(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    done.set_exception(SystemExit(f"/jobs/{job_id}/events answered {head[:40]!r}"))
                    return
                answered = True
                connected.append(now)
            data = tail + data
            for match in _EVENT_ID.finditer(data):
                arrivals.setdefault(int(match.group(1)), now)
            tail = data[-32:]
            if b"event: complete" in data or b"event: failed" in data:
                done.set_result(None)

    try:
        await loop.sock_connect(sock, (host, int(port)))
        request = f"GET /jobs/{job_id}/events HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await loop.sock_sendall(sock, request.encode())
        loop.add_reader(sock.fileno(), readable)
        try:
            await asyncio.wait_for(done, timeout=120)
        finally:
            loop.remove_reader(sock.fileno())
    finally:
        sock.close()


async def fan_out(api_url: str, subscribers: int, steps: int, checkpoint: str) -> tuple[float, bool, int]:
    """One job followed by `subscribers` readers of its event stream: for the events that happened once every reader
    was connected (live ones, not replayed), the p95 of how much later than the first reader each reader got it
    (the lag fan-out adds); and whether every reader got every event, replayed or live."""
    job_id = f"fanout-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as http:
        # A job ahead of it keeps ComfyUI busy while every reader connects, so the watched job's events are live.
        # Fresh seeds: ComfyUI would answer an identical graph from its cache, with hardly any events.
        for name, job_steps in ((f"{job_id}-ahead", 3 * steps), (job_id, steps)):
            graph = slow_graph(job_steps, checkpoint, seed=random.randrange(1, 2**31))
            (await http.post("/prompt", json={"prompt": graph, "id": name, "async": True})).raise_for_status()
    arrivals: list[dict[int, float]] = [{} for _ in range(subscribers)]
    connected: list[float] = []
    await asyncio.gather(*(_subscriber(api_url, job_id, seen, connected) for seen in arrivals))
    events = set().union(*(seen.keys() for seen in arrivals))
    complete = all(set(seen) == events for seen in arrivals)
    all_connected = max(connected)
    live = [seq for seq in events if min(seen[seq] for seen in arrivals) > all_connected]
    lags = [(seen[seq] - min(other[seq] for other in arrivals)) * 1000.0 for seq in live for seen in arrivals]
    return (percentile(lags, 0.95) if lags else float("nan")), complete, len(live)


async def report_fan_out(api_url: str, checkpoint: str) -> None:
    single, _, _ = await fan_out(api_url, 1, 40, checkpoint)
    many, complete, count = await fan_out(api_url, 50, 40, checkpoint)
    print(f"\none job's /jobs/<id>/events, {count} live events: how much later than the first reader each reader")
    print("received each event (kernel receive times), p95")
    print(f"  1 subscriber {single:6.2f} ms   50 subscribers {many:6.2f} ms   every subscriber got every event: "
          f"{complete}   (target: +{many - single:.2f} ms <= 5 ms)")  # fmt: skip


async def report_comfy_door(direct: DirectComfyClient, api_url: str, n: int, checkpoint: str) -> None:
    """The same ComfyUI client (HTTP + /ws, /history, /view) given this server's /comfyui door as its ComfyUI: the
    tiny workflow, then a sampler job (what the door's fixed cost per job weighs against a job that computes)."""
    door = DirectComfyClient(api_url + "/comfyui")
    await door.start()
    try:
        print("\n--- a ComfyUI client through /comfyui (POST /prompt, /ws, /history, /view) ---")
        await latency(direct, door, 10)
        report_latency(await latency(direct, door, n), p50_target=1.05)
        steps = 4
        samples = await latency(
            direct, door, min(n, 20), lambda _: slow_graph(steps, checkpoint, seed=random.randrange(1 << 31))
        )
        report_latency(samples, p50_target=1.05, workflow=f"sampler job ({steps} steps)")
    finally:
        await door.aclose()


def start_runpod_worker(comfy_url: str, extra_env: dict[str, str], work: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`comfyui-api runpod` serving the runpod SDK's local test API; RunPod's own URLs lead nowhere (loopback)."""
    port = free_port()
    env = {
        **extra_env,
        "COMFYUI_URL": comfy_url,
        "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:9/job-take/$ID",
        "RUNPOD_WEBHOOK_POST_OUTPUT": "http://127.0.0.1:9/job-done/$ID",
    }
    args = ["runpod", "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    # The SDK serves its docs at / once the handler is up.
    return _start_comfyui_api(args, env, work, "runpod-worker", port, "/")


async def report_runpod(
    direct: DirectComfyClient, api_url: str, comfy_url: str, extra_env: dict[str, str], work: Path, n: int
) -> None:
    """A RunPod job both ways: through this server's /v2/{endpoint}/runsync, and through the worker's handler
    behind the SDK's local test API."""
    worker_url, worker = start_runpod_worker(comfy_url, extra_env, work)
    try:
        for label, base in (("/v2/{endpoint}/runsync on the server", f"{api_url}/v2/bench"),
                            ("the RunPod worker's handler (SDK local test API, /runsync)", worker_url)):  # fmt: skip
            client = RunpodClient(base)
            try:
                print(f"\n--- {label} ---")
                await latency(direct, client, 10)
                report_latency(await latency(direct, client, n), p50_target=1.05)
            finally:
                await client.aclose()
    finally:
        worker.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=20)


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="comfyui-api-bench-") as tmp:
        work = Path(tmp)
        comfy_url, comfy_process, extra_env = start_comfy(args, work)
        api_url, api_process = start_api(comfy_url, extra_env, work)
        direct, api = DirectComfyClient(comfy_url), ApiClient(api_url)
        processes: list[subprocess.Popen[bytes]] = []
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
            await report_fan_out(api_url, args.checkpoint)
            await report_comfy_door(direct, api_url, args.n, args.checkpoint)
            await report_runpod(direct, api_url, comfy_url, extra_env, work, args.n)
            for label, env, targets in _variants(args, extra_env, work):
                variant_url, variant_process = start_api(comfy_url, env, work, label.split()[0])
                processes.append(variant_process)
                variant = ApiClient(variant_url)
                try:
                    print(f"\n--- {label} ---")
                    await latency(direct, variant, 10)
                    report_latency(await latency(direct, variant, args.n), p50_target=targets[0], p95_target=targets[1])
                    if label.startswith("attach"):
                        await big_output(direct, variant, comfy_url, variant_process.pid, args.big_runs)
                finally:
                    await variant.aclose()
            if not args.comfy_url and not args.comfy_dir:  # the workers run simulators with simulated GPU time
                await report_amqp(work, args.amqp_url, args.checkpoint, args.amqp_tasks)
        finally:
            await direct.aclose()
            await api.aclose()
            for process in (*processes, api_process, comfy_process):
                if process is not None:
                    process.terminate()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=20)


def _variants(
    args: argparse.Namespace, extra_env: dict[str, str], work: Path
) -> list[tuple[str, dict[str, str], tuple[float, float]]]:
    """Other ways to run comfyui-api against the same ComfyUI, each measured against the direct client too."""
    found: list[tuple[str, dict[str, str], tuple[float, float]]] = []
    if not args.comfy_url:  # already attached without a shared disk: that is the main row
        attach = {**extra_env, "COMFYUI_OUTPUTS_COLOCATED": "false", "COMFYUI_INPUTS_COLOCATED": "false"}
        found.append(("attach mode (outputs read through GET /view, inputs uploaded)", attach, (1.05, 1.10)))
    sqlite = {**extra_env, "JOB_STORE": f"sqlite:///{work / 'jobs' / 'jobs.db'}"}
    found.append(("sqlite job store (JOB_STORE=sqlite:///...)", sqlite, (1.05, 1.10)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfy-url", help="an already running ComfyUI")
    parser.add_argument("--comfy-dir", help="a ComfyUI checkout to start")
    parser.add_argument("--comfy-python", default=sys.executable, help="python for --comfy-dir")
    parser.add_argument("--n", type=int, default=200, help="sequential requests per side")
    parser.add_argument("--throughput-total", type=int, default=320)
    parser.add_argument("--big-runs", type=int, default=5)
    parser.add_argument(
        "--checkpoint", default="sim-sd15.safetensors", help="checkpoint of the sampler job the fan-out row streams"
    )
    parser.add_argument(
        "--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/", help="RabbitMQ for the scale-out row"
    )
    parser.add_argument("--amqp-tasks", type=int, default=36, help="tasks the 3 workers share (1 worker: a third)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
