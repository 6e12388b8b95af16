"""Recorded ComfyUI sessions: run a transcript's steps against a target, normalise what came back, compare shapes.

Owns the transcript format (see `run_steps`), placeholder substitution and the shape comparison. Both the recorder
script and the replay test use it. Must not import ComfyUI code.

A transcript is JSON: {"name", "placeholders": {name: kind}, "steps": [step...]}; a step is one of
  {"op": "ws_open", "socket": S, "client_id": "{{c}}", "feature_flags": bool, "frames": [...]}
  {"op": "ws_close", "socket": S}
  {"op": "http", "method", "path", "json" | "raw" | "multipart": {"fields", "files"}, "socket"?: S, "bind"?: name,
   "response": {"status", "content_type", "json" | "text" | "bytes"}, "frames"?: [...]}
Requests hold "{{name}}" placeholders (in strings) and "{{#name}}" (a whole value that is an int). Recorded
responses and frames are normalised: every placeholder's value is written back as "{{name}}".
"""

from __future__ import annotations

import base64
import random
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.contract.harness import (
    HTTP_TIMEOUT_S,
    MODEL_RUN_TIMEOUT_S,
    Frame,
    Target,
    WsClient,
    binary_header,
    first_checkpoint,
    open_ws,
    wait_idle,
)

PLACEHOLDER = re.compile(r"\{\{(#?)([A-Za-z0-9_]+)\}\}")
# Scalars under these keys must be equal (after normalisation); everything else is compared by type only.
EXACT_KEYS = frozenset(
    {"type", "status_str", "completed", "class_type", "node_type", "exception_type", "state", "subfolder",
     "filename", "name", "message", "details", "animated", "image_type", "supports_preview_metadata"}
)  # fmt: skip


@dataclass
class Substitutions:
    """Placeholder name -> value for one run of a transcript."""

    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fresh(cls, kinds: Mapping[str, str]) -> Substitutions:
        values: dict[str, Any] = {}
        for name, kind in kinds.items():
            if kind == "int":
                values[name] = random.randrange(1, 0xFFFFFF)
            elif kind == "client":
                values[name] = "contract-" + uuid.uuid4().hex
            else:
                values[name] = "ct" + uuid.uuid4().hex[:10]
        return cls(values)

    def apply(self, obj: Any) -> Any:
        """Fill placeholders into a request template."""
        if isinstance(obj, str):
            whole = PLACEHOLDER.fullmatch(obj)
            if whole and whole.group(1) == "#":
                return self.values[whole.group(2)]
            return PLACEHOLDER.sub(lambda m: str(self.values[m.group(2)]), obj)
        if isinstance(obj, list):
            return [self.apply(item) for item in obj]
        if isinstance(obj, dict):
            return {self.apply(key): self.apply(value) for key, value in obj.items()}
        return obj

    def normalise(self, obj: Any) -> Any:
        """Write placeholder values found in strings (and keys) back as placeholders."""
        if isinstance(obj, str):
            # Longest values first, so a value containing another is replaced whole.
            for name, value in sorted(self.values.items(), key=lambda item: -len(str(item[1]))):
                if isinstance(value, str) and value:
                    obj = obj.replace(value, "{{" + name + "}}")
            return obj
        if isinstance(obj, list):
            return [self.normalise(item) for item in obj]
        if isinstance(obj, dict):
            return {self.normalise(key): self.normalise(value) for key, value in obj.items()}
        return obj


async def substitutions_for(target: Target, transcript: Mapping[str, Any]) -> Substitutions | None:
    """Fresh placeholder values for one run; None when the transcript needs a checkpoint the target lacks."""
    subs = Substitutions.fresh(transcript["placeholders"])
    if transcript.get("requires_checkpoint"):
        async with httpx.AsyncClient(base_url=target.base_url, timeout=HTTP_TIMEOUT_S) as client:
            checkpoint = await first_checkpoint(client)
        if checkpoint is None:
            return None
        subs.values["checkpoint"] = checkpoint
    return subs


def image_format(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def normalise_frame(frame: Frame, subs: Substitutions) -> dict[str, Any]:
    if isinstance(frame, dict):
        return dict(subs.normalise(frame))
    event, second = binary_header(frame)
    if event == 4:
        import json

        metadata = json.loads(frame[8 : 8 + second].decode("utf-8"))
        return {"binary": 4, "metadata": subs.normalise(metadata), "image_format": image_format(frame[8 + second :])}
    return {"binary": event, "image_type": second, "image_format": image_format(frame[8:])}


def frame_kind(frame: Mapping[str, Any]) -> str:
    return f"binary:{frame['binary']}" if "binary" in frame else str(frame.get("type"))


# ------------------------------------------------------------------------------------------- comparison


def _type_class(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    # int and float stay apart: ComfyUI writes 0.0/1.0 where a node starts and the node's own ints afterwards.
    return type(value).__name__


def compare(expected: Any, actual: Any, path: str = "$", key: str | None = None) -> list[str]:
    """Differences between a recorded value and a replayed one: key sets, list lengths, types, exact keys."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        diffs = []
        missing, extra = set(expected) - set(actual), set(actual) - set(expected)
        if missing or extra:
            diffs.append(f"{path}: keys missing {sorted(missing)} extra {sorted(extra)}")
        for name in sorted(set(expected) & set(actual)):
            diffs += compare(expected[name], actual[name], f"{path}.{name}", name)
        return diffs
    if isinstance(expected, list) and isinstance(actual, list):
        if all(not isinstance(item, dict | list) for item in expected + actual):
            # Lists of scalars (tracebacks, id lists, combo options) legitimately vary in length and content.
            want, got = {_type_class(item) for item in expected}, {_type_class(item) for item in actual}
            if want and got and want != got:
                return [f"{path}: list element types {sorted(want)} != {sorted(got)}"]
            return []
        if len(expected) != len(actual):
            return [f"{path}: list length {len(expected)} != {len(actual)}"]
        diffs = []
        for index, (want_item, got_item) in enumerate(zip(expected, actual, strict=True)):
            diffs += compare(want_item, got_item, f"{path}[{index}]", key)
        return diffs
    if _type_class(expected) != _type_class(actual):
        return [f"{path}: {_type_class(expected)} {expected!r} != {_type_class(actual)} {actual!r}"]
    if key in EXACT_KEYS and expected != actual:
        return [f"{path}: {expected!r} != {actual!r}"]
    return []


def compare_frames(expected: list[dict[str, Any]], actual: list[dict[str, Any]], path: str) -> list[str]:
    want, got = [frame_kind(f) for f in expected], [frame_kind(f) for f in actual]
    if want != got:
        return [f"{path}: frame order\n  recorded {want}\n  replayed {got}"]
    diffs: list[str] = []
    for index, (want_frame, got_frame) in enumerate(zip(expected, actual, strict=True)):
        diffs += compare(want_frame, got_frame, f"{path}[{index}]<{want[index]}>")
    return diffs


# ---------------------------------------------------------------------------------------------- running


def _request_kwargs(step: Mapping[str, Any], subs: Substitutions) -> dict[str, Any]:
    if "json" in step:
        return {"json": subs.apply(step["json"])}
    if "raw" in step:
        return {"content": step["raw"].encode(), "headers": {"Content-Type": "application/json"}}
    if "multipart" in step:
        spec = subs.apply(step["multipart"])
        files = {
            name: (item["filename"], base64.b64decode(item["content_b64"]), item.get("content_type", "image/png"))
            for name, item in spec.get("files", {}).items()
        }
        return {"files": files, "data": spec.get("fields", {})}
    return {}


def observe_response(response: httpx.Response, subs: Substitutions) -> dict[str, Any]:
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    observed: dict[str, Any] = {"status": response.status_code, "content_type": content_type}
    if not response.content:
        observed["empty"] = True
    elif content_type == "application/json":
        observed["json"] = subs.normalise(response.json())
    elif content_type.startswith("text/"):
        observed["text"] = subs.normalise(response.text)
    else:
        observed["bytes"] = image_format(response.content)
    return observed


async def run_steps(
    target: Target, steps: list[dict[str, Any]], subs: Substitutions, timeout_s: float = MODEL_RUN_TIMEOUT_S
) -> list[dict[str, Any]]:
    """Perform the steps; return, per step, what was observed (normalised): frames and/or the response."""
    for name, directory in (("input_dir", target.input_dir), ("output_dir", target.output_dir),
                            ("temp_dir", target.temp_dir)):  # fmt: skip
        if directory is not None:
            subs.values.setdefault(name, str(directory))
    observed: list[dict[str, Any]] = []
    sockets: dict[str, WsClient] = {}
    contexts = []
    async with httpx.AsyncClient(base_url=target.base_url, timeout=timeout_s) as client:
        # Frames of earlier work (prompts without a client_id broadcast progress) must not leak into this run.
        await wait_idle(client, timeout_s)
        try:
            for step in steps:
                if step["op"] == "ws_open":
                    context = open_ws(target, subs.apply(step["client_id"]), bool(step.get("feature_flags")))
                    ws = await context.__aenter__()
                    contexts.append(context)
                    sockets[step["socket"]] = ws
                    observed.append({"frames": [normalise_frame(f, subs) for f in ws.connect_frames]})
                elif step["op"] == "ws_close":
                    await sockets.pop(step["socket"]).close()
                    observed.append({})
                else:
                    observed.append(await _run_http(client, step, subs, sockets, timeout_s))
        finally:
            for context in reversed(contexts):
                await context.__aexit__(None, None, None)
        await wait_idle(client, timeout_s)
    return observed


async def _run_http(
    client: httpx.AsyncClient,
    step: Mapping[str, Any],
    subs: Substitutions,
    sockets: Mapping[str, WsClient],
    timeout_s: float,
) -> dict[str, Any]:
    response = await client.request(step["method"], subs.apply(step["path"]), **_request_kwargs(step, subs))
    if step.get("bind") and response.status_code == 200:
        subs.values[step["bind"]] = response.json()["prompt_id"]
    result: dict[str, Any] = {"response": observe_response(response, subs)}
    if step.get("socket") and response.status_code == 200:
        prompt_id = response.json()["prompt_id"]
        frames = await sockets[step["socket"]].collect_run(prompt_id, timeout_s)
        result["frames"] = [normalise_frame(f, subs) for f in frames]
    return result


def compare_run(recorded: list[dict[str, Any]], replayed: list[dict[str, Any]]) -> list[str]:
    """All differences between a transcript's recorded steps and a replay of them."""
    diffs: list[str] = []
    for index, (step, seen) in enumerate(zip(recorded, replayed, strict=True)):
        label = f"step {index} {step['op']} {step.get('method', '')} {step.get('path', '')}".rstrip()
        if "response" in step:
            want, got = step["response"], seen["response"]
            if want["status"] != got["status"] or want["content_type"] != got["content_type"]:
                diffs.append(f"{label}: {want['status']} {want['content_type']!r} != {got['status']} "
                             f"{got['content_type']!r}")  # fmt: skip
            elif "text" in want and want["text"] != got.get("text"):
                diffs.append(f"{label}: text {want['text']!r} != {got.get('text')!r}")
            else:
                diffs += compare({k: v for k, v in want.items() if k != "status"},
                                 {k: v for k, v in got.items() if k != "status"}, label)  # fmt: skip
        if "frames" in step:
            diffs += compare_frames(step["frames"], seen.get("frames", []), f"{label} frames")
    return diffs
