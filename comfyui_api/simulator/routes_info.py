"""HTTP handlers describing the server: system_stats, features, object_info, models, embeddings, the
frontend helpers, and the /internal sub-application (which, as in ComfyUI, has no /api twin)."""

from __future__ import annotations

import glob
import os
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from comfyui_api.simulator.simulator import Simulator

_INDEX_HTML = (
    "<!doctype html><html><head><title>ComfyUI</title></head>"
    "<body><p>comfyui-api simulator: a stand-in for the ComfyUI server API, without a web interface.</p></body>"
    "</html>"
)


def _memory_bytes() -> tuple[int, int]:
    """(total, available) RAM, read the way ComfyUI reports it on CPU."""
    total = available = 0
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                key, _, rest = line.partition(":")
                if key == "MemTotal":
                    total = int(rest.split()[0]) * 1024
                elif key == "MemAvailable":
                    available = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return total, available


def _system_stats(sim: Simulator) -> dict[str, Any]:
    total, free = _memory_bytes()
    profile = sim.config.profile
    system: dict[str, Any] = {
        "os": sys.platform if profile.new_system_keys else os.name,
        "ram_total": total,
        "ram_free": free,
        "comfyui_version": profile.version,
        "required_frontend_version": profile.frontend_version,
        "installed_templates_version": profile.templates_version,
        "required_templates_version": profile.templates_version,
    }
    if profile.new_system_keys:
        system["comfy_package_versions"] = [
            {"name": name, "installed": version, "required": version}
            for name, version in (
                ("comfyui-frontend-package", profile.frontend_version),
                ("comfyui-workflow-templates", profile.templates_version),
            )
        ]
    system.update(python_version=sys.version, pytorch_version="2.13.0+cpu", embedded_python=False)
    if profile.new_system_keys:
        system["deploy_environment"] = "local-git"
    system["argv"] = list(sim.config.argv)
    return {
        "system": system,
        "devices": [
            {
                "name": "cpu",
                "type": "cpu",
                "index": None,
                "vram_total": total,
                "vram_free": free,
                "torch_vram_total": total,
                "torch_vram_free": free,
            }
        ],
    }


def _list_userdata(sim: Simulator, query: Any) -> web.Response:
    """GET /userdata?dir=: files of the default user's folder (the frontend's workflow browser)."""
    directory = query.get("dir", "")
    if not directory:
        return web.Response(status=400, text="Directory not provided")
    root = os.path.abspath(os.path.join(sim.folders.user_dir, "default"))
    path = os.path.abspath(os.path.join(root, urllib.parse.unquote(directory)))
    if os.path.commonpath((root, path)) != root:
        return web.Response(status=403, text="Invalid directory")
    if not os.path.isdir(path):
        return web.Response(status=404, text="Directory not found")
    recurse = query.get("recurse", "").lower() == "true"
    pattern = os.path.join(glob.escape(path), "**", "*") if recurse else os.path.join(glob.escape(path), "*")
    found = glob.glob(pattern, recursive=recurse)
    return web.json_response([os.path.relpath(f, path).replace(os.sep, "/") for f in found if os.path.isfile(f)])


def add_routes(routes: web.RouteTableDef, sim: Simulator) -> None:
    @routes.get("/system_stats")
    async def system_stats(request: web.Request) -> web.Response:
        return web.json_response(_system_stats(sim))

    @routes.get("/features")
    async def features(request: web.Request) -> web.Response:
        return web.json_response(sim.config.server_features())

    @routes.get("/object_info")
    async def object_info(request: web.Request) -> web.Response:
        return web.json_response({name: spec.info(sim.folders) for name, spec in sim.registry.items()})

    @routes.get("/object_info/{node_class}")
    async def object_info_node(request: web.Request) -> web.Response:
        name = request.match_info["node_class"]
        spec = sim.registry.get(name)
        return web.json_response({name: spec.info(sim.folders)} if spec is not None else {})

    @routes.get("/embeddings")
    async def embeddings(request: web.Request) -> web.Response:
        return web.json_response([os.path.splitext(n)[0] for n in sim.folders.model_files("embeddings")])

    @routes.get("/models")
    async def models(request: web.Request) -> web.Response:
        return web.json_response(list(sim.folders.model_folders))

    @routes.get("/models/{folder}")
    async def models_in(request: web.Request) -> web.Response:
        folder = request.match_info["folder"]
        if folder not in sim.folders.model_folders:
            return web.Response(status=404)
        return web.json_response(sim.folders.model_files(folder))

    @routes.get("/extensions")
    async def extensions(request: web.Request) -> web.Response:
        return web.json_response([])

    @routes.get("/settings")
    async def settings(request: web.Request) -> web.Response:
        return web.json_response({})

    @routes.get("/users")
    async def users(request: web.Request) -> web.Response:
        return web.json_response({"storage": "server", "migrated": True})

    @routes.get("/workflow_templates")
    async def workflow_templates(request: web.Request) -> web.Response:
        return web.json_response({})

    @routes.get("/userdata")
    async def userdata(request: web.Request) -> web.Response:
        return _list_userdata(sim, request.rel_url.query)

    @routes.get("/i18n")
    async def i18n(request: web.Request) -> web.Response:
        return web.json_response({})


def internal_app(sim: Simulator) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/logs")
    async def logs(request: web.Request) -> web.Response:
        return web.json_response("".join(f"{e['t']} - {e['m']}" for e in sim.logs.entries))

    @routes.get("/logs/raw")
    async def logs_raw(request: web.Request) -> web.Response:
        return web.json_response({"entries": list(sim.logs.entries), "size": {"cols": 80, "rows": 24}})

    @routes.get("/folder_paths")
    async def folder_paths(request: web.Request) -> web.Response:
        return web.json_response({k: [str(p) for p in v[0]] for k, v in sim.folders.model_folders.items()})

    @routes.get("/files/{directory_type}")
    async def files(request: web.Request) -> web.Response:
        kind = request.match_info["directory_type"]
        directory = sim.folders.directory_by_type(kind)
        if directory is None:
            return web.json_response({"error": "Invalid directory type"}, status=400)
        entries = sorted((e for e in os.scandir(directory) if e.is_file()), key=lambda e: -e.stat().st_mtime)
        return web.json_response([e.name for e in entries])

    app = web.Application()
    app.add_routes(routes)
    return app


async def index(request: web.Request) -> web.Response:
    return web.Response(
        body=_INDEX_HTML.encode("utf-8"),
        headers={"Cache-Control": "no-cache", "Pragma": "no-cache", "Expires": "0", "Content-Type": "text/html"},
    )


async def not_found(request: web.Request) -> web.StreamResponse:
    """What ComfyUI's static route answers for an unknown path: 404, octet-stream, empty, chunked."""
    response = web.StreamResponse(status=404, headers={"Content-Type": "application/octet-stream"})
    await response.prepare(request)
    await response.write_eof()
    return response
