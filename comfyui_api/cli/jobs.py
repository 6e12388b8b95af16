"""The client commands: `run WORKFLOW.json` (submit, live progress, outputs written, Ctrl-C cancels) and
`jobs list|get|watch|cancel|download`. They talk to a running server through `comfyui_api.client` only.

Exit codes: 0 success, 1 the job failed or the server refused or could not be reached (the error printed with its
field), 2 usage (a bad flag, an unreadable workflow, a malformed --set), 130 interrupted (Ctrl-C; `run` cancels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from comfyui_api.cli.progress import ProgressView
from comfyui_api.client import ApiError, Client, ClientError, Job, Result
from comfyui_api.client._shared import failed_event_error, target_path
from comfyui_api.client.workflow import load_workflow, parse_value

USAGE = 2
FAILED = 1
INTERRUPTED = 130
_STATUSES = ("queued", "running", "completed", "failed", "cancelled")


def _connection_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server", metavar="URL", help="the comfyui-api server [default: $COMFYUI_API_URL, else http://127.0.0.1:3000]"
    )
    parser.add_argument("--api-key", metavar="KEY", help="API key [default: $COMFYUI_API_KEY]")
    parser.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")


def add_client_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = commands.add_parser(
        "run",
        help="run a workflow file on a server: live progress, outputs written to --out",
        description="Submit WORKFLOW.json (API format, or a POST /prompt body) to a comfyui-api server, show its "
        "progress, write its outputs into --out under their names. Ctrl-C cancels the job.",
    )
    run.add_argument("workflow", metavar="WORKFLOW.json")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NODE.inputs.NAME=VALUE",
        help="set an input (JSON value, else text); repeatable",
    )
    run.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NODE.NAME=PATH_OR_URL",
        help="a media input: a local file (sent as base64) or a URL; repeatable",
    )
    run.add_argument("--out", default=".", metavar="DIR", help="where outputs are written [default: .]")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="the job's timeout_s")
    run.add_argument("--async", dest="asynchronous", action="store_true", help="submit, print the job id and return")
    _connection_flags(run)

    jobs = commands.add_parser("jobs", help="list, inspect, follow, cancel and download jobs on a server")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="jobs, newest first")
    listing.add_argument("--status", choices=_STATUSES)
    listing.add_argument("--limit", type=int, default=20)
    for name, text in (
        ("get", "a job's record"),
        ("watch", "follow a job's progress to its end"),
        ("cancel", "cancel a job"),
    ):
        action = actions.add_parser(name, help=text)
        action.add_argument("id", metavar="JOB_ID")
        _connection_flags(action)
    download = actions.add_parser("download", help="write a job's outputs into --out")
    download.add_argument("id", metavar="JOB_ID")
    download.add_argument("--out", default=".", metavar="DIR")
    for action in (listing, download):
        _connection_flags(action)


def run_client_command(
    options: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        with Client(options.server, api_key=options.api_key) as client:
            if options.command == "run":
                return _run(client, options, out, err)
            return _jobs(client, options, out, err)
    except ApiError as exc:
        print(f"error: {exc.describe()}", file=err)
        return FAILED
    except ClientError as exc:
        print(f"error: {exc}", file=err)
        return FAILED


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _run(client: Client, options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        workflow = load_workflow(options.workflow)
        sets = {key: parse_value(value) for key, value in _pairs(options.set, "--set").items()}
        inputs: dict[str, str | Path] = dict(_pairs(options.input, "--input"))
        job = client.submit(workflow, set=sets, inputs=inputs, timeout=options.timeout)
    except ValueError as exc:
        print(f"comfyui-api run: {exc}", file=err)
        return USAGE
    if options.asynchronous:
        _print(out, options.json, {"id": job.id, "status": job.status}, f"{job.id} {job.status}")
        return 0
    started = time.monotonic()
    view = ProgressView(job.id, err)
    try:
        for event in client.events(job.id):
            view.update(event)
            if event.name == "complete":
                view.finish()
                return _completed(Result.from_body(event.data), Path(options.out), options.json, out, started)
            if event.name == "failed":
                view.finish()
                error = failed_event_error(job.id, event.data)
                print(f"failed: {error.describe()}", file=err)
                _print(out, options.json, {"id": job.id, "status": "failed", "error": event.data.get("error")}, None)
                return FAILED
    except KeyboardInterrupt:
        view.finish()
        cancelled = client.cancel(job.id)
        print(f"interrupted: job {job.id} {'cancelled' if cancelled else 'had already ended'}", file=err)
        return INTERRUPTED
    print(f"error: the events of job {job.id} ended without an outcome", file=err)
    return FAILED


def _completed(result: Result, directory: Path, as_json: bool, out: TextIO, started: float) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    described = []
    for output in result.outputs:
        entry: dict[str, Any] = {
            "node_id": output.node_id,
            "kind": output.kind,
            "filename": output.filename,
            "content_type": output.content_type,
            "size_bytes": output.size_bytes,
        }
        if output.data is not None:
            path = target_path(directory, output, taken)
            path.write_bytes(output.data)
            entry["path"] = str(path)
        else:
            entry["url"] = output.url  # uploaded by the server: where it is
        described.append(entry)
    elapsed = time.monotonic() - started
    lines = [f"completed {result.id} in {elapsed:.1f}s"]
    for entry in described:
        lines.append(
            f"  {entry.get('path') or entry.get('url')}  {entry['content_type']}  {_size(entry['size_bytes'])}"
        )
    lines += [f"  text: {text}" for text in result.texts]
    document = {
        "id": result.id,
        "status": "completed",
        "outputs": described,
        "texts": list(result.texts),
        "stats": dict(result.stats),
    }
    _print(out, as_json, document, "\n".join(lines))
    return 0


def _jobs(client: Client, options: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if options.action == "list":
        page = client.list(status=options.status, limit=options.limit)
        rows = [f"{'ID':<38} {'STATUS':<10} {'CREATED':<19} PROGRESS"]
        rows += [f"{job.id:<38} {job.status:<10} {_when(job.created_at):<19} {job.percent:5.1f}%" for job in page.jobs]
        _print(
            out,
            options.json,
            {"jobs": [dict(job.raw) for job in page.jobs], "next_cursor": page.next_cursor},
            "\n".join(rows),
        )
        return 0
    if options.action == "get":
        out.write(json.dumps(dict(client.get(options.id).raw), indent=2) + "\n")
        return 0
    if options.action == "cancel":
        cancelled = client.cancel(options.id)
        _print(
            out,
            options.json,
            {"id": options.id, "cancelled": cancelled},
            f"{options.id} {'cancelled' if cancelled else 'had already ended (or is unknown)'}",
        )
        return 0 if cancelled else FAILED
    if options.action == "download":
        paths = client.download(options.id, options.out)
        _print(
            out,
            options.json,
            {"id": options.id, "paths": [str(path) for path in paths]},
            "\n".join(str(path) for path in paths),
        )
        return 0
    return _watch(client, options.id, out, err, as_json=options.json)


def _watch(client: Client, job_id: str, out: TextIO, err: TextIO, *, as_json: bool) -> int:
    view = ProgressView(job_id, err)
    try:
        for event in client.events(job_id):
            view.update(event)
    except KeyboardInterrupt:
        view.finish()
        return INTERRUPTED  # watching stops; the job goes on
    view.finish()
    job: Job = client.get(job_id)
    _print(out, as_json, dict(job.raw), f"{job.id} {job.status}")
    return 0 if job.status == "completed" else FAILED


def _print(out: TextIO, as_json: bool, document: Any, text: str | None) -> None:
    if as_json:
        out.write(json.dumps(document) + "\n")
    elif text:
        out.write(text + "\n")
    out.flush()


def _size(size_bytes: int) -> str:
    if size_bytes < 1024:
        return f"{size_bytes} B"
    size = float(size_bytes)
    for unit in ("KB", "MB", "GB"):
        size /= 1024
        if size < 1024 or unit == "GB":
            break
    return f"{size:.1f} {unit}"


def _when(epoch_s: float | None) -> str:
    return datetime.fromtimestamp(epoch_s).strftime("%Y-%m-%d %H:%M:%S") if epoch_s else ""
