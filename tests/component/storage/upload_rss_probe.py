"""Measures how much a large upload grows the resident memory of a fresh process. Run by test_storage_memory.py:

    python -m tests.component.storage.upload_rss_probe --provider s3 --endpoint URL --bucket B --file F
    python -m tests.component.storage.upload_rss_probe --provider http --url-prefix URL --file F

Prints one JSON line: rss_before_bytes (after imports and a 1 MiB warm-up upload), peak_bytes (the highest of a
5 ms psutil sampler and getrusage's ru_maxrss when it rose during the upload), growth_bytes, url, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from typing import Any

import psutil

from comfyui_api.storage.base import StorageProvider
from comfyui_api.storage.http import HttpProvider
from comfyui_api.storage.s3 import S3Provider
from tests.rss import RssSampler


def max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    provider: StorageProvider
    if args.provider == "s3":
        provider = S3Provider(region="us-east-1", endpoint_url=args.endpoint, timeout_s=300)
        options: dict[str, Any] = {"bucket": args.bucket}
    else:
        provider = HttpProvider(timeout_s=300)
        options = {"url_prefix": args.url_prefix}
    source = Path(args.file)
    warmup = source.with_name("warmup.bin")
    warmup.write_bytes(b"w" * 1024 * 1024)
    try:
        await provider.upload(warmup, key="probe/warmup.bin", content_type="application/octet-stream", options=options)
        rss_before = psutil.Process().memory_info().rss
        max_before = max_rss_bytes()
        started = time.monotonic()
        with RssSampler(interval_s=0.005) as sampler:
            uploaded = await provider.upload(source, key="probe/big.mp4", content_type="video/mp4", options=options)
        seconds = time.monotonic() - started
        max_after = max_rss_bytes()
    finally:
        await provider.aclose()
        warmup.unlink(missing_ok=True)
    peak = max(sampler.peak_bytes, max_after if max_after > max_before else 0)
    return {
        "rss_before_bytes": rss_before,
        "peak_bytes": peak,
        "growth_bytes": max(0, peak - rss_before),
        "url": uploaded.url,
        "size_bytes": uploaded.size_bytes,
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--provider", choices=("s3", "http"), required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--bucket")
    parser.add_argument("--url-prefix")
    parser.add_argument("--file", required=True)
    print(json.dumps(asyncio.run(measure(parser.parse_args()))), flush=True)


if __name__ == "__main__":
    main()
