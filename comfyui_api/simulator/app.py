"""The aiohttp application: middlewares (origin check or CORS), the /ws handler, and every API route
registered twice, at /x and /api/x, as ComfyUI does."""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import WSMsgType, web
from aiohttp.typedefs import Middleware

from comfyui_api.simulator import routes_files, routes_info, routes_jobs, routes_prompt

if TYPE_CHECKING:
    from comfyui_api.simulator.simulator import Simulator

log = logging.getLogger("comfyui_api.simulator")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # other names are not resolved: no DNS lookups inside a request


def _origin_only(refuse_cross_site: bool) -> Middleware:
    @web.middleware
    async def origin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if refuse_cross_site and request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            # ComfyUI >= 0.33: a browser's cross-site request is refused whatever its Origin says.
            log.warning("WARNING: cross-site request refused, returning 403")
            return web.Response(status=403)
        # A page on another site must not queue prompts on a loopback server: Host and Origin must agree.
        if "Host" in request.headers and "Origin" in request.headers:
            host_domain = request.headers["Host"].lower()
            parsed = urllib.parse.urlparse(request.headers["Origin"])
            origin_domain: str | None = parsed.netloc.lower()
            host_parsed = urllib.parse.urlsplit("//" + host_domain)
            loopback = _is_loopback(host_parsed.hostname)
            compare_host: str | None = host_domain
            if parsed.port is None:
                compare_host = host_parsed.hostname
            if host_parsed.port is None:
                origin_domain = parsed.hostname
            if loopback and compare_host and origin_domain and compare_host != origin_domain:
                log.warning(
                    "WARNING: request with non matching host and origin %s != %s, returning 403",
                    compare_host,
                    origin_domain,
                )
                return web.Response(status=403)
        if request.method == "OPTIONS":
            return web.Response()
        return await handler(request)

    return origin_only


def _cors(origin: str) -> Middleware:
    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = web.Response() if request.method == "OPTIONS" else await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST, GET, DELETE, PUT, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization"
        response.headers["Access-Control-Allow-Credentials"] = "true"
        return response

    return cors


def _websocket_route(routes: web.RouteTableDef, sim: Simulator) -> None:
    @routes.get("/ws")
    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.rel_url.query.get("clientId", "")
        if sid:
            sim.hub.sockets.pop(sid, None)  # the newer socket replaces an older one with the same id
        else:
            sid = uuid.uuid4().hex
        sim.hub.sockets[sid] = ws
        sim.hub.flags[sid] = {"feature_flags": {}}
        try:
            await sim.hub.send("status", {"status": sim.queue_info(), "sid": sid}, sid)
            if sim.hub.client_id == sid and sim.hub.last_node_id is not None:
                await sim.hub.send("executing", {"node": sim.hub.last_node_id}, sid)
            first_message = True
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    log.warning("ws connection closed with exception %s", ws.exception())
                elif msg.type == WSMsgType.TEXT:
                    try:
                        data = json.loads(msg.data)
                        if first_message and data.get("type") == "feature_flags":
                            sim.hub.flags[sid]["feature_flags"] = data.get("data", {})
                            await sim.hub.send("feature_flags", sim.config.server_features(), sid)
                        first_message = False
                    except json.JSONDecodeError:
                        log.warning("Invalid JSON received from client %s: %s", sid, msg.data)
                    except Exception as err:  # a strange frame is logged, never fatal
                        log.error("Error processing WebSocket message: %s", err)
        finally:
            # The same-clientId quirk: this removes whichever socket is now registered under sid.
            sim.hub.sockets.pop(sid, None)
            sim.hub.flags.pop(sid, None)
        return ws


def create_app(sim: Simulator) -> web.Application:
    profile = sim.config.profile
    middleware = _cors(sim.config.cors_origin) if sim.config.cors_origin else _origin_only(profile.cross_site_refused)
    app = web.Application(client_max_size=sim.config.max_upload_size_bytes, middlewares=[middleware])
    routes = web.RouteTableDef()
    _websocket_route(routes, sim)
    routes_prompt.add_routes(routes, sim)
    routes_files.add_routes(routes, sim)
    routes_info.add_routes(routes, sim)
    routes.get("/")(routes_info.index)
    app.add_subapp("/internal", routes_info.internal_app(sim))
    api_routes = web.RouteTableDef()
    for route in routes:
        if isinstance(route, web.RouteDef):
            api_routes.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
    app.add_routes(api_routes)
    app.add_routes(routes)
    if profile.jobs_api:  # only under /api: the jobs routes have no twin
        jobs_routes = web.RouteTableDef()
        routes_jobs.add_routes(jobs_routes, sim)
        app.add_routes(jobs_routes)
    app.router.add_get("/{tail:.*}", routes_info.not_found)
    return app
