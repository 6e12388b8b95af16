"""A small HTTP file server for tests, run as a subprocess: `python -m tests.servers.file_server --root DIR [auth]`.

Binds 127.0.0.1 port 0 and prints `LISTENING <port>`. Routes:
    GET/HEAD /files/<path>   the file under --root (`?content_type=` and `?disposition=` override those headers)
    PUT      /files/<path>   streams the body to disk under --root; remembers its Content-Type; 201
    GET      /redirect?to=U  302 to U
    ANY      /status/<code>  answers <code>
    GET      /slow?seconds=N answers 200 after N seconds
    GET      /_requests      every request seen so far (method, path, query, headers), never auth-checked
Auth (all optional; a request passes when it satisfies any one configured): --bearer TOKEN, --basic USER:PASS,
--header NAME=VALUE, --query NAME=VALUE. Without any, everything is open.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import mimetypes
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

CHUNK_BYTES = 1024 * 1024


class FileServer:
    def __init__(self, root: Path, auth: argparse.Namespace):
        self.root = root.resolve()
        self.auth = auth
        self.requests: list[dict[str, Any]] = []
        self.content_types: dict[str, str] = {}

    def _authorised(self, request: web.Request) -> bool:
        checks = []
        header = request.headers.get("Authorization", "")
        if self.auth.bearer:
            checks.append(header == f"Bearer {self.auth.bearer}")
        if self.auth.basic:
            checks.append(header == "Basic " + base64.b64encode(self.auth.basic.encode()).decode())
        if self.auth.header:
            name, _, value = self.auth.header.partition("=")
            checks.append(request.headers.get(name) == value)
        if self.auth.query:
            name, _, value = self.auth.query.partition("=")
            checks.append(request.query.get(name) == value)
        return not checks or any(checks)

    def _path(self, tail: str) -> Path:
        path = (self.root / tail).resolve()
        if self.root not in path.parents:
            raise web.HTTPForbidden(text="outside the root")
        return path

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path != "/_requests":
            self.requests.append(
                {
                    "method": request.method,
                    "path": request.path,
                    "query": request.query_string,
                    "headers": {k.lower(): v for k, v in request.headers.items()},
                }
            )
            if not self._authorised(request):
                raise web.HTTPUnauthorized(text="authentication required")
        response: web.StreamResponse = await handler(request)
        return response

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        path = self._path(tail)
        if not path.is_file():
            raise web.HTTPNotFound(text="no such file")
        headers = {}
        content_type = request.query.get("content_type") or self.content_types.get(tail)
        if content_type is None:
            content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers["Content-Type"] = content_type
        if "disposition" in request.query:
            headers["Content-Disposition"] = request.query["disposition"]
        return web.FileResponse(path, headers=headers)

    async def put_file(self, request: web.Request) -> web.Response:
        tail = request.match_info["tail"]
        path = self._path(tail)
        path.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        handle = await asyncio.to_thread(open, path, "wb")
        with handle:
            async for chunk in request.content.iter_chunked(CHUNK_BYTES):
                handle.write(chunk)
                size += len(chunk)
        self.content_types[tail] = request.headers.get("Content-Type", "application/octet-stream")
        return web.json_response({"size_bytes": size}, status=201)

    async def redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def status(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=int(request.match_info["code"]), text="scripted status")

    async def slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("seconds", "30")))
        return web.Response(text="late")

    async def seen(self, request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware])
        app.router.add_get("/files/{tail:.+}", self.get_file)
        app.router.add_put("/files/{tail:.+}", self.put_file)
        app.router.add_get("/redirect", self.redirect)
        app.router.add_route("*", "/status/{code:\\d+}", self.status)
        app.router.add_get("/slow", self.slow)
        app.router.add_get("/_requests", self.seen)
        return app


async def serve(args: argparse.Namespace) -> None:
    server = FileServer(Path(args.root), args)
    runner = web.AppRunner(server.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    print(f"LISTENING {port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bearer")
    parser.add_argument("--basic")
    parser.add_argument("--header")
    parser.add_argument("--query")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
