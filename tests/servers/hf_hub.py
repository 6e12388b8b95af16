"""A small Hugging Face Hub stand-in for tests, run as a subprocess: `python -m tests.servers.hf_hub --seed DIR ...`.

It implements the routes huggingface_hub calls for `hf_hub_download` and `upload_file`:
    HEAD/GET [/datasets|/spaces]/<repo>/resolve/<rev>/<path>   X-Repo-Commit, ETag, Content-Length; files at or
        over --lfs-threshold-bytes answer 302 to http://localhost:<port>/cdn/<sha256> with X-Linked-Etag and
        X-Linked-Size, as the Hub does for LFS files (a different host, so the client drops its token there)
    GET/HEAD /cdn/<sha256>                                       the blob
    POST /api/<type>s/<repo>/preupload/<rev>                     every file is "regular" (no LFS, so no Xet)
    POST /api/<type>s/<repo>/commit/<rev>                        ndjson: header, file (base64), deletedFile
Repos come from --seed DIR (DIR/<type>s/<namespace>/<name>/<files>, revision "main") and --repo <type>:<id>
(empty). --token T makes writes (and reads of repos listed with --private) require `Authorization: Bearer T`.
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) like the Hub's.
Binds 127.0.0.1 port 0 and prints `LISTENING <port>`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import re
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

REPO_TYPES = ("model", "dataset", "space")
_RESOLVE = re.compile(r"^/(?:(datasets|spaces)/)?(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API = re.compile(r"^/api/(?P<type>models|datasets|spaces)/(?P<repo>[^/]+/[^/]+)/(?P<op>preupload|commit)/(?P<rev>.+)$")


@dataclass
class Blob:
    path: Path
    size_bytes: int
    sha256: str
    git_sha1: str


@dataclass
class Repo:
    private: bool = False
    branches: dict[str, str] = field(default_factory=dict)  # revision -> commit oid
    files: dict[str, dict[str, Blob]] = field(default_factory=dict)  # commit oid -> path -> blob


class HubServer:
    def __init__(self, args: argparse.Namespace):
        self.token: str | None = args.token
        self.lfs_threshold_bytes: int = args.lfs_threshold_bytes
        self.blob_dir = Path(args.blob_dir)
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.port = 0
        if args.seed:
            self._seed(Path(args.seed))
        for spec in args.repo or ():
            repo_type, _, repo_id = spec.partition(":")
            self._repo(repo_type, repo_id)
        for spec in args.private or ():
            repo_type, _, repo_id = spec.partition(":")
            self._repo(repo_type, repo_id).private = True

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        if (repo_type, repo_id) not in self.repos:
            oid = secrets.token_hex(20)
            self.repos[(repo_type, repo_id)] = Repo(branches={"main": oid}, files={oid: {}})
        return self.repos[(repo_type, repo_id)]

    def _store(self, data: bytes) -> Blob:
        sha256 = hashlib.sha256(data).hexdigest()
        git_sha1 = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        path = self.blob_dir / sha256
        path.write_bytes(data)
        return Blob(path, len(data), sha256, git_sha1)

    def _seed(self, root: Path) -> None:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            parts = file.relative_to(root).parts
            if len(parts) < 4 or parts[0][:-1] not in REPO_TYPES:
                continue
            repo = self._repo(parts[0][:-1], f"{parts[1]}/{parts[2]}")
            repo.files[repo.branches["main"]]["/".join(parts[3:])] = self._store(file.read_bytes())

    def _check_token(self, request: web.Request) -> None:
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "Invalid credentials in Authorization header"}),
                content_type="application/json",
            )

    @staticmethod
    def _not_found(code: str, message: str) -> web.HTTPNotFound:
        return web.HTTPNotFound(
            headers={"X-Error-Code": code, "X-Error-Message": message},
            text=json.dumps({"error": message}),
            content_type="application/json",
        )

    def _lookup(self, repo_type: str, repo_id: str, revision: str, request: web.Request) -> tuple[Repo, str]:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise self._not_found("RepoNotFound", "Repository not found")
        if repo.private:
            self._check_token(request)
        oid = repo.branches.get(revision, revision if revision in repo.files else None)
        if oid is None:
            raise self._not_found("RevisionNotFound", "Invalid rev id: " + revision)
        return repo, oid

    async def resolve(self, request: web.Request, match: re.Match[str]) -> web.StreamResponse:
        repo_type = {"datasets": "dataset", "spaces": "space"}.get(match.group(1) or "", "model")
        revision, path = unquote(match["rev"]), unquote(match["path"])
        repo, oid = self._lookup(repo_type, match["repo"], revision, request)
        blob = repo.files[oid].get(path)
        if blob is None:
            raise self._not_found("EntryNotFound", f"{path} does not exist on {revision}")
        headers = {"X-Repo-Commit": oid, "Accept-Ranges": "bytes"}
        if blob.size_bytes >= self.lfs_threshold_bytes:
            headers |= {
                "ETag": f'"{blob.sha256}"',
                "X-Linked-Etag": f'"{blob.sha256}"',
                "X-Linked-Size": str(blob.size_bytes),
                "Location": f"http://localhost:{self.port}/cdn/{blob.sha256}",
            }
            return web.Response(status=302, headers=headers)
        headers["ETag"] = f'"{blob.git_sha1}"'
        return web.FileResponse(blob.path, headers=headers)

    async def cdn(self, sha256: str) -> web.StreamResponse:
        path = self.blob_dir / sha256
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"ETag": f'"{path.name}"'})

    async def api(self, request: web.Request, match: re.Match[str]) -> web.Response:
        self._check_token(request)
        repo_type = match["type"][:-1]
        repo, oid = self._lookup(repo_type, match["repo"], unquote(match["rev"]), request)
        if match["op"] == "preupload":
            body = await request.json()
            files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in body["files"]]
            return web.json_response({"files": files, "commitOid": oid})
        tree = dict(repo.files[oid])
        for line in (await request.read()).splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                tree[item["value"]["path"]] = self._store(base64.b64decode(item["value"]["content"]))
            elif item["key"] == "deletedFile":
                tree.pop(item["value"]["path"], None)
            elif item["key"] != "header":
                raise web.HTTPBadRequest(text=f"unsupported commit item {item['key']!r}")
        new_oid = secrets.token_hex(20)
        repo.files[new_oid] = tree
        repo.branches[unquote(match["rev"])] = new_oid
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        commit_url = f"http://127.0.0.1:{self.port}/{prefix}{match['repo']}/commit/{new_oid}"
        return web.json_response(
            {"commitUrl": commit_url, "commitOid": new_oid, "success": True, "pullRequestUrl": None}
        )

    async def route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/cdn/") and request.method in ("GET", "HEAD"):
            return await self.cdn(path.removeprefix("/cdn/"))
        if request.method == "POST" and (api := _API.match(path)):
            return await self.api(request, api)
        if request.method in ("GET", "HEAD") and (resolve := _RESOLVE.match(request.raw_path.split("?")[0])):
            return await self.resolve(request, resolve)
        raise web.HTTPNotFound(text="no such route")


async def serve(args: argparse.Namespace) -> None:
    hub = HubServer(args)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hub.route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    hub.port = runner.addresses[0][1]
    print(f"LISTENING {hub.port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blob-dir", required=True, help="where blobs are stored")
    parser.add_argument("--seed", help="DIR/<type>s/<namespace>/<name>/<files> loaded at start")
    parser.add_argument("--repo", action="append", help="<type>:<namespace>/<name>, created empty")
    parser.add_argument("--private", action="append", help="<type>:<namespace>/<name> whose reads need the token")
    parser.add_argument("--token")
    parser.add_argument("--lfs-threshold-bytes", type=int, default=1024 * 1024)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
