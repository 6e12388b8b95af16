"""Record the contract transcripts against a real ComfyUI: python -m tests.contract.record_transcripts URL, or
--comfyui-dir DIR [--python PY] to start that checkout with fresh input/output/temp dirs for the recording.

Owns writing tests/fixtures/real/<name>.json: each scenario's request templates plus what the server answered,
normalised. Talks to ComfyUI only over HTTP and /ws; must not import ComfyUI code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.contract.harness import Target, TargetSpec, attach_target, start_target
from tests.contract.scenarios import OBJECT_INFO_NODES, all_scenarios
from tests.contract.transcript import run_steps, substitutions_for

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "fixtures" / "real"


async def record(target: Target, out_dir: Path, names: set[str], local_paths: dict[str, str]) -> list[Path]:
    """Record every scenario (or those named); local_paths are written as placeholders wherever they appear."""
    url = target.base_url
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        system = (await client.get("/system_stats")).json()["system"]
    recorded_against = {key: system.get(key) for key in ("comfyui_version", "pytorch_version", "python_version")}
    written = []
    if not names or "object_info" in names:
        written.append(await record_object_info(url, out_dir, recorded_against))
    for scenario in all_scenarios():
        if names and scenario["name"] not in names:
            continue
        subs = await substitutions_for(target, scenario)
        if subs is None:
            print("skipped", scenario["name"], "(no checkpoint)")
            continue
        subs.values.update(local_paths)
        observed = await run_steps(target, scenario["steps"], subs)
        steps: list[dict[str, Any]] = [{**step, **seen} for step, seen in zip(scenario["steps"], observed, strict=True)]
        transcript = {**scenario, "recorded_against": recorded_against, "steps": steps}
        path = out_dir / f"{scenario['name']}.json"
        path.write_text(json.dumps(transcript, indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    return written


async def record_object_info(url: str, out_dir: Path, recorded_against: dict[str, Any]) -> Path:
    nodes: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
        for class_type in OBJECT_INFO_NODES:
            nodes[class_type] = (await client.get(f"/object_info/{class_type}")).json()[class_type]
    path = out_dir / "object_info.json"
    path.write_text(json.dumps({"recorded_against": recorded_against, "nodes": nodes}, indent=1) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", help="base URL of a running ComfyUI, e.g. http://127.0.0.1:8188")
    parser.add_argument("--comfyui-dir", type=Path, help="a ComfyUI checkout to start instead of a URL")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs that checkout")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", nargs="*", default=[], help="scenario names to record (default: all)")
    args = parser.parse_args()
    if (args.url is None) == (args.comfyui_dir is None):
        parser.error("give either a URL or --comfyui-dir")
    args.out.mkdir(parents=True, exist_ok=True)
    local_paths: dict[str, str] = {}
    if args.url is not None:
        target = attach_target(args.url.rstrip("/"), is_real=True)
    else:
        local_paths["comfyui_dir"] = str(args.comfyui_dir.resolve())
        local_paths["python_prefix"] = str(Path(args.python).parent.parent)
        target = start_target(TargetSpec(url=None, comfyui_dir=args.comfyui_dir, python=args.python,
                                         url_is_simulator=False))  # fmt: skip
    try:
        for path in asyncio.run(record(target, args.out, set(args.only), local_paths)):
            print("wrote", path)
    finally:
        target.stop()


if __name__ == "__main__":
    main()
